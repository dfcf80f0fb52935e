"""``tunelab plan`` vs the measured peak on the GPU (run by ``benchmarks/gpu.sh``).

One ``tunelab plan CONFIG --json`` (the CLI, fresh process) on the 1B Llama of
``gpu_bench.py prepare``, then a few real steps of ``tunelab.train.train`` per configuration
of :data:`RUNS`, each in a fresh process, at the plan's precision (bf16 autocast over bf16
weights), micro-batch and sequence length. Every example is longer than ``data.max_length``,
so every batch is padded to it, as the plan's peak batch is.

Measured peak on the GPU (the issue's definition): ``torch.cuda.max_memory_allocated()`` of
the training process plus its CUDA context (what the device has in use minus what PyTorch's
allocator reserved, read at the end of training); on CPU (``--smoke``): the process's peak
RSS, as ``benchmarks/plan_accuracy.py`` measures it.

    python benchmarks/gpu_plan.py --work DIR --seconds 150
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).parent
sys.path.insert(0, str(BENCH))

from gpu_bench import mode, setting  # noqa: E402

# method, gradient checkpointing; in this order, so that a cut run still has two methods
RUNS = (("lora", False), ("full", False), ("lora", True))
SEQ = {"gpu": 256, "smoke": 64}
BATCH = {"gpu": 8, "smoke": 4}
STEPS = 6
MB = 2**20


def run_config(work: Path, method: str, checkpointing: bool, out: Path, smoke: bool) -> dict:
    """The plan's (and each measured run's) config: only the model, data, method and batch."""
    device = setting(smoke)
    return {
        "model": {
            "name_or_path": str(work / "llama-1b"),
            "dtype": device["dtype"],
            "attn_implementation": device["attn"],
            "gradient_checkpointing": checkpointing,
        },
        "data": {
            "path": str(work / "long.jsonl"),
            "format": "instruction",
            "truncation_side": "left",
            "max_length": SEQ[mode(smoke)],
            "cache_dir": str(work / "data-cache"),
            "split": {"train": 1.0, "validation": 0.0, "test": 0.0, "seed": 42},
        },
        "method": {"name": method},
        "train": {
            "max_steps": STEPS,
            "batch_size": BATCH[mode(smoke)],
            "precision": device["precision"],
            "report_to": [],
            "group_by_length": False,
        },
        "eval": {"at_end": False},
        "output": {"dir": str(out)},
    }


def run_plan(work: Path, smoke: bool) -> dict[str, Any]:
    """``tunelab plan --json`` for the methods of :data:`RUNS` (its JSON object)."""
    path = work / "plan.yaml"
    path.write_text(yaml.safe_dump(run_config(work, "lora", False, work / "plan-out", smoke)))
    methods = [arg for m in dict.fromkeys(m for m, _ in RUNS) for arg in ("--method", m)]
    command = [sys.executable, "-m", "tunelab.cli", "plan", str(path), "--json", *methods]
    done = subprocess.run(command, capture_output=True, text=True)
    (work / "plan.log").write_text(done.stdout + done.stderr)
    lines = done.stdout.splitlines()
    if done.returncode != 0 or "{" not in lines:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise SystemExit(f"tunelab plan failed (exit {done.returncode}): {tail}")
    return json.loads("\n".join(lines[lines.index("{") :]))


def measure_main(spec_path: str) -> None:
    """In the measured process: train, then write the step times and the GPU memory."""
    import torch

    from throughput_workers import timed_train

    spec = json.loads(Path(spec_path).read_text())
    timing, _ = timed_train(spec)
    ends = [s["t"] for s in timing["steps"]]
    out: dict[str, Any] = {"step_s": statistics.median(b - a for a, b in itertools.pairwise(ends))}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        free, total = torch.cuda.mem_get_info()
        out["allocated_peak_mb"] = torch.cuda.max_memory_allocated() / MB
        out["reserved_peak_mb"] = torch.cuda.max_memory_reserved() / MB
        out["context_mb"] = (total - free - torch.cuda.memory_reserved()) / MB
    Path(spec["result"]).write_text(json.dumps(out))


def measure(work: Path, method: str, checkpointing: bool, smoke: bool) -> dict[str, Any]:
    """One fresh training process of a configuration; its measured peak and step time."""
    from tunelab.plan.measure import run_measured

    name = f"{method}{'-ckpt' if checkpointing else ''}"
    folder = work / "measured" / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / "out", ignore_errors=True)  # this benchmark's own run: never resume
    spec = {
        "config": run_config(work, method, checkpointing, folder / "out", smoke),
        "result": str(folder / "result.json"),
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    code = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import gpu_plan as g"
    command = [sys.executable, "-c", f"{code}; g.measure_main({str(folder / 'spec.json')!r})"]
    status, rss_mb = run_measured(
        command, folder / "log.txt", {**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    if status != 0:
        tail = (folder / "log.txt").read_text().strip().splitlines()[-1:]
        return {"error": f"exit {status}: {tail}"}
    result = json.loads((folder / "result.json").read_text())
    result["rss_mb"] = rss_mb
    if "allocated_peak_mb" in result:
        result["measured_mb"] = result["allocated_peak_mb"] + result["context_mb"]
    else:
        result["measured_mb"] = rss_mb
    return result


def plan_row(plan: dict[str, Any], method: str, checkpointing: bool, smoke: bool) -> dict | None:
    """The plan's row of a measured configuration (None: the plan skipped it)."""
    for row in plan["rows"]:
        if (
            row["method"] == method
            and row["gradient_checkpointing"] == checkpointing
            and row["precision"] == setting(smoke)["precision"]
            and row["micro_batch"] == BATCH[mode(smoke)]
        ):
            return row
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="gpu_bench.py's folder.")
    parser.add_argument("--seconds", type=float, default=150, help="Time to use.")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model (a check).")
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    started = time.monotonic()
    plan = run_plan(args.work, args.smoke)
    print(f"  plan done in {time.monotonic() - started:.0f} s", flush=True)
    rows, longest = [], 0.0
    for method, checkpointing in RUNS:
        if time.monotonic() + longest > deadline:
            print(f"  time is up: {method} checkpointing={checkpointing} not measured")
            continue
        row = plan_row(plan, method, checkpointing, args.smoke)
        if row is None:
            print(f"  {method} checkpointing={checkpointing}: no plan row ({plan['skipped']})")
            continue
        started = time.monotonic()
        measured = measure(args.work, method, checkpointing, args.smoke)
        longest = max(longest, time.monotonic() - started)
        rows.append({"method": method, "checkpointing": checkpointing, "plan": row, **measured})
        shown = measured.get("error") or f"{measured['measured_mb']:.0f} MB measured"
        print(
            f"  {method} checkpointing={checkpointing}: plan {row['peak_memory_mb']:.0f} MB, {shown}"
        )
        saved = {"plan": {k: v for k, v in plan.items() if k != "rows"}, "rows": rows,
                 "seq": SEQ[mode(args.smoke)], "micro_batch": BATCH[mode(args.smoke)]}  # fmt: skip
        (args.work / "plan_vs_measured.json").write_text(json.dumps(saved, indent=1))


if __name__ == "__main__":
    main()
