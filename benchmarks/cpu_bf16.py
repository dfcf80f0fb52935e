"""bf16 against fp32 training on this CPU: is ``train.precision: bf16`` (what ``tunelab doctor``
suggests where the CPU has native bf16 matmul) faster, lighter and as good?

For each workload, fresh ``tunelab train`` processes alternate fp32 and bf16 (``--rounds``
rounds, the order flipped each round) on the same data, seed and steps; each process's peak
RSS comes from ``os.wait4`` (``measured_train``), its throughput and losses from its
``train_summary.json`` and ``metrics.jsonl``. Prints every run, then per workload the ratios
bf16 / fp32 of the best throughput, of the highest peak RSS and of the mean training loss over
the same batches.

    python benchmarks/cpu_bf16.py [--rounds 2] [--workloads llama,smollm2,minilm] [--work DIR]

Without native bf16 (``tunelab.train.precision.cpu_has_native_bf16``) it says so and stops:
emulated bf16 is tens of times slower (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from measured_train import train_measured
from throughput_assets import (
    MINILM,
    NEWS_DATA,
    SMOLLM2,
    instruction_rows,
    tiny_llama_in,
)

STEPS = {"llama": 16, "smollm2": 10, "minilm": 16}
BATCH = {"llama": 8, "smollm2": 8, "minilm": 16}
MAX_LENGTH = 256


def config(work: Path, workload: str, precision: str, out: Path) -> dict[str, Any]:
    """One run's config: LoRA, ``STEPS`` steps, batches padded to ``MAX_LENGTH`` at most."""
    if workload == "minilm":
        model: dict[str, Any] = {"name_or_path": MINILM}
        data: dict[str, Any] = {"path": NEWS_DATA, "format": "classification"}
        data["max_samples"] = STEPS[workload] * BATCH[workload]
    else:
        rows = work / "rows.jsonl"
        if not rows.exists():
            found = instruction_rows(100, 100, 42)
            rows.write_text("".join(json.dumps(r) + "\n" for r in found))
        model = dict(SMOLLM2)
        if workload == "llama":
            model = {"name_or_path": str(tiny_llama_in(work))}
        data = {"path": str(rows), "format": "instruction"}
    data.update(max_length=MAX_LENGTH, cache_dir=str(work / "data-cache"))
    data["split"] = {"train": 1.0, "validation": 0.0, "test": 0.0, "seed": 42}
    return {
        "model": model,
        "data": data,
        "method": {"name": "lora"},
        "train": {
            "max_steps": STEPS[workload],
            "batch_size": BATCH[workload],
            "precision": precision,
            "report_to": [],
            "seed": 42,
        },
        "eval": {"at_end": False},
        "output": {"dir": str(out), "report": False},
    }


def run(work: Path, workload: str, precision: str) -> dict[str, Any]:
    """A fresh ``tunelab train`` process: throughput, peak RSS (MB) and its training losses."""
    cfg = config(work, workload, precision, work / f"run-{workload}-{precision}")
    try:
        peak_mb, summary, steps = train_measured(cfg, work)
    except RuntimeError as exc:
        raise SystemExit(f"{workload} {precision}: {exc}") from None
    return {
        "workload": workload,
        "precision": precision,
        "rate": summary["tokens_per_s"],
        "unit": summary.get("throughput_unit", "tokens"),
        "peak_mb": peak_mb,
        "loss": statistics.fmean(r["loss"] for r in steps),
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workloads", default="llama,smollm2,minilm")
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tunelab.train.precision import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        print("this CPU has no native bf16 matmul: bf16 would be emulated; nothing to compare")
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="cpu-bf16-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'workload':9} {'precision':9} {'rate/s':>9} {'peak MB':>8} {'mean loss':>9} load")
    results = []
    for workload in args.workloads.split(","):
        for round_ in range(args.rounds):
            order = ("fp32", "bf16") if round_ % 2 == 0 else ("bf16", "fp32")
            for precision in order:
                r = run(work, workload, precision)
                results.append(r)
                print(
                    f"{workload:9} {precision:9} {r['rate']:>9.1f} {r['peak_mb']:>8.0f} "
                    f"{r['loss']:>9.4f} {r['load']:.1f}",
                    flush=True,
                )
    print("\nbf16 / fp32 (best throughput, highest peak RSS, mean training loss)")
    for workload in args.workloads.split(","):
        by = {p: [r for r in results if r["workload"] == workload and r["precision"] == p]
              for p in ("fp32", "bf16")}  # fmt: skip
        speed = max(r["rate"] for r in by["bf16"]) / max(r["rate"] for r in by["fp32"])
        memory = max(r["peak_mb"] for r in by["bf16"]) / max(r["peak_mb"] for r in by["fp32"])
        loss = statistics.fmean(r["loss"] for r in by["bf16"]) / statistics.fmean(
            r["loss"] for r in by["fp32"]
        )
        unit = by["fp32"][0]["unit"]
        print(f"  {workload:9} {unit}/s {speed:.2f}x  peak RSS {memory:.2f}x  loss {loss:.4f}")
    (work / "cpu_bf16.json").write_text(json.dumps(results, indent=1))
    print(f"results: {work / 'cpu_bf16.json'}")


if __name__ == "__main__":
    main()
