"""Training throughput: tunelab on its defaults vs HF Trainer + PEFT (random and length-grouped
batches) vs TRL SFTTrainer (packing).

tunelab gets only the model, data and batch settings; everything else is its default. The
baselines get the same model, tokenised examples (from ``tunelab.prepare_data``), LoRA
settings, optimizer, schedule and precision (tunelab's defaults), one epoch over the same
examples. Variants of tunelab with one default switch turned off show what each contributed.
Each system runs in its own subprocess; systems alternate (order reversed each round); time
runs from the start of the first optimizer step to the end of the last one.

    python benchmarks/train_throughput.py --quick   # under 5 minutes
    python benchmarks/train_throughput.py           # the full table

Workloads: instruction data (chatterbot-corpus English pairs + BBC article -> headline,
length-skewed, max_length 512) on a 33.5M tiny Llama (random init) and on SmolLM2-135M-Instruct;
MiniLM LoRA classification of BBC News; full fine-tuning of the tiny Llama.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}.items():
    os.environ.setdefault(_key, _value)

from throughput_assets import (  # noqa: E402  (benchmarks/ is on sys.path when run)
    Assets,
    Job,
    data_key,
    prepare_assets,
    remeasure_peak,
    rows_per_step,
    run_config,
    with_setting,
)
from tunelab.allocator import launch_env  # noqa: E402

# tunelab variants: each turns one default switch off, to show what it contributed
SWITCHES: dict[str, dict[str, Any]] = {
    "tunelab": {},
    "tunelab-nochunk": {"loss_chunk_size": 0},
    "tunelab-random": {"group_by_length": False},
    "tunelab-torchdrop": {"fast_dropout": False},
}
# environment switches: tunelab on glibc's malloc instead of the tunelab command's tcmalloc
ENV_SWITCHES: dict[str, dict[str, str]] = {"tunelab-glibc": {"TUNELAB_ALLOCATOR": "system"}}
Results = dict[str, list[dict[str, Any]]]


def plan(quick: bool, rounds: int) -> list[list[Job]]:
    """Groups of jobs; the systems of a group alternate round by round, groups run in order."""
    lm = (
        "tunelab", "tunelab-nochunk", "tunelab-torchdrop", "tunelab-glibc", "hf-grouped", "hf",
        "trl",
    )  # fmt: skip
    if quick:
        return [[Job(s, "llama", rows=48) for s in lm]]
    extra = ("tunelab-random", "hf-grouped+tcmalloc")
    return [
        [Job(s, "llama", rows=160, rounds=rounds) for s in (*lm, *extra)],
        [Job(s, "smollm2", rows=48) for s in lm],
        [Job(s, "minilm", rows=96) for s in ("tunelab", "hf-grouped", "hf")],
        [Job(s, "llama", method="full", rows=160) for s in ("tunelab", "hf-grouped")],
    ]


def run_job(
    assets: Assets, job: Job, round_: int, setting: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one job in a fresh subprocess and return its result; ``setting``: the device,
    precision, weight dtype and attention kernel of every system (``benchmarks/gpu_bench.py``;
    default: the CPU benchmark's)."""
    info = assets.data[data_key(job)]
    job_dir = assets.work / "runs" / job.key.replace("/", "-") / f"round{round_}"
    job_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(job_dir / "out", ignore_errors=True)  # never auto-resume an earlier run
    spec = {
        **info,
        "system": job.system.split("+")[0],
        "workload": job.workload,
        "method": job.method,
        "packed_rows": rows_per_step(info),
        "model_dir": assets.model_dirs[job.workload],
        "out_dir": str(job_dir / "out"),
        "result": str(job_dir / "result.json"),
        "config": with_setting(
            run_config(assets, job, job_dir / "out", SWITCHES.get(job.system, {})), setting
        ),
        **(setting or {}),
    }
    spec_path = job_dir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    worker = Path(__file__).with_name("throughput_workers.py")
    code = f"import sys; sys.path.insert(0, {str(worker.parent)!r}); import throughput_workers as w"
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}; w.worker_main({str(spec_path)!r})"],
        capture_output=True,
        text=True,
        env=job_env(job.system),
    )
    (job_dir / "log.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        print(f"  {job.key} round {round_}: FAILED (exit {proc.returncode})")
        print("    " + "\n    ".join(tail))
        return {"error": tail[-1] if tail else "failed"}
    return json.loads((job_dir / "result.json").read_text())


def job_env(system: str) -> dict[str, str]:
    """tunelab runs as the ``tunelab`` command starts it (on tcmalloc where found); the
    baselines as their users start them, except a ``+tcmalloc`` control."""
    env = {**os.environ, **ENV_SWITCHES.get(system, {})}
    if system.startswith("tunelab") or system.endswith("+tcmalloc"):
        env = launch_env(env) or env
    return env


def summarise(job: Job, result: dict[str, Any], peak: float, info: dict[str, Any]) -> dict:
    """Throughput of one run over its whole epoch (the first step's start to the last end).

    MFU counts the FLOPs the task needs, the same for every system: per real token 2 FLOPs per
    matmul weight forward, 2 for the input gradients and, for full fine-tuning, 2 for the
    weight gradients (frozen LoRA bases need none); the LM head only for loss-bearing tokens.
    """
    steps = result["steps"]
    seconds = steps[-1]["t"] - result["start"]
    loss_tokens = sum(s["loss_tokens"] for s in steps)
    tokens = sum(s["tokens"] for s in steps)
    body, head = info["matmul_params"] - info["head_params"], info["head_params"]
    flops = (6 if job.method == "full" else 4) * (body * tokens + head * loss_tokens)
    return {
        "loss_tok_s": loss_tokens / seconds,
        "tok_s": tokens / seconds,
        "samples_s": sum(s["samples"] for s in steps) / seconds,
        "mfu": flops / seconds / (peak * 1e9),
        "rss_mb": result["peak_rss_mb"],
        "seconds": seconds,
        "steps": len(steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small run (under 5 minutes).")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds of the tiny-Llama group.")
    parser.add_argument("--work-dir", default="/tmp/tunelab-bench", help="Scratch directory.")
    parser.add_argument("--report", help="Only print the report of a saved results.json.")
    parser.add_argument("--only", help="Run only this group, e.g. llama/lora (a rerun).")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        report([Job(**j) for j in saved["jobs"]], saved["results"], saved["peak"], saved["data"])
        return
    started = time.perf_counter()
    groups = plan(args.quick, args.rounds)
    if args.only:
        groups = [g for g in groups if f"{g[0].workload}/{g[0].method}" == args.only]
    jobs = [job for group in groups for job in group]
    assets = prepare_assets(Path(args.work_dir), jobs)
    print_setup(assets)
    suffix = f"-{args.only.replace('/', '-')}" if args.only else ""
    saved_path = assets.work / f"results{suffix}{'-quick' if args.quick else ''}.json"
    results: Results = {j.key: [] for j in jobs}
    for group in groups:
        for round_ in range(group[0].rounds):
            for job in group if round_ % 2 == 0 else reversed(group):
                results[job.key].append(run_job(assets, job, round_))
                print(f"  round {round_}: {job.key} done", flush=True)
                save(saved_path, jobs, results, assets)
    remeasure_peak(assets.peak_gflops, args.quick)
    save(saved_path, jobs, results, assets)
    report(jobs, results, assets.peak_gflops, assets.data)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s; results in {saved_path}")


def save(path: Path, jobs: list[Job], results: Results, assets: Assets) -> None:
    saved = {"jobs": [vars(j) for j in jobs], "results": results, "peak": assets.peak_gflops}
    path.write_text(json.dumps({**saved, "data": assets.data}))


def print_setup(assets: Assets) -> None:
    from tunelab.config import TrainConfig

    defaults = TrainConfig()
    print(f"matmul peak measured here: fp32 {assets.peak_gflops['fp32']:.0f} GFLOP/s")
    print(
        "tunelab defaults: "
        + ", ".join(
            f"{k}={getattr(defaults, k)}"
            for k in ("loss_chunk_size", "group_by_length", "packing", "fast_dropout", "compile")
        )
    )
    env = launch_env(os.environ)
    print(f"tunelab command's allocator: {env['LD_PRELOAD'] if env else 'glibc malloc'}")
    for name, info in assets.data.items():
        packed = f" = {rows_per_step(info)} packed rows" if "minilm" not in name else ""
        print(
            f"{name}: {info['n']} train examples, mean {info['mean_length']:.0f} tokens, "
            f"max_length {info['max_length']}, batch {info['batch']} examples{packed}"
        )


def report(jobs: list[Job], results: Results, peak: dict[str, float], data: dict) -> None:
    """Print the table, the ratios, what each default switch contributed and the targets."""
    rows: dict[str, dict[str, float]] = {}
    header = (
        f"{'workload/method/rows/system':32} {'loss tok/s':>10} {'samples/s':>9} {'tok/s':>7} "
        f"{'MFU':>6} {'RSS MB':>7} {'held-out':>8} {'s/epoch':>7} {'steps':>5} {'runs':>4}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for job in jobs:
        runs = [r for r in results.get(job.key, []) if "steps" in r]
        if not runs:
            error = (results.get(job.key) or [{}])[0].get("error", "not run")
            print(f"{job.key:32} FAILED: {error}")
            continue
        info = data[data_key(job)]
        summaries = [summarise(job, r, peak["fp32"], info) for r in runs]
        row = {k: statistics.median(s[k] for s in summaries) for k in summaries[0]}
        row["rss_mb"] = max(s["rss_mb"] for s in summaries)
        heldout = [r["heldout_loss"] for r in runs if "heldout_loss" in r]
        row["heldout"] = statistics.fmean(heldout) if heldout else float("nan")
        rows[job.key] = row
        print(
            f"{job.key:32} {row['loss_tok_s']:10.1f} {row['samples_s']:9.2f} {row['tok_s']:7.0f} "
            f"{row['mfu']:6.1%} {row['rss_mb']:7.0f} {row['heldout']:8.4f} "
            f"{row['seconds']:7.1f} {row['steps']:5.0f} {len(runs):4}"
        )
    print("(one epoch per run; throughput: median over runs, RSS the highest; held-out: loss of")
    print(" the trained model on the held-out examples, mean over runs; MFU of the useful FLOPs)")
    for prefix in sorted({k.rsplit("/", 1)[0] for k in rows}):
        print_targets(prefix, rows)


def print_targets(prefix: str, rows: dict[str, dict[str, float]]) -> None:
    """Ratios of tunelab's defaults to each baseline, the switches' shares, the targets."""

    def get(system: str, metric: str) -> float | None:
        row = rows.get(f"{prefix}/{system}")
        return row[metric] if row else None

    def ratio(a: str, b: str, metric: str) -> float | None:
        x, y = get(a, metric), get(b, metric)
        return x / y if x is not None and y else None

    def line(name: str, value: float | None, ok: bool | None, fmt: str = "{:.2f}x") -> None:
        verdict = "NOT RUN" if value is None else {True: "PASS", False: "FAIL", None: "info"}[ok]
        shown = "" if value is None else f": {fmt.format(value)}"
        print(f"  {verdict} {name}{shown}")

    metric = "samples_s" if prefix.startswith("minilm") else "loss_tok_s"
    unit = "samples/s" if metric == "samples_s" else "loss-bearing tokens/s"
    print(f"\n{prefix}: tunelab defaults vs the baselines")
    v = ratio("tunelab", "hf-grouped", metric)
    line(f"{unit} tunelab / HF Trainer+PEFT grouped >= 2", v, (v or 0) >= 2)
    v = ratio("tunelab", "hf-grouped", "rss_mb")
    line("peak RSS tunelab / HF grouped <= 0.6", v, v is not None and v <= 0.6)
    v = ratio("tunelab", "hf-grouped", "heldout")
    line(
        "held-out loss tunelab / HF grouped within 2%",
        v,
        v is not None and abs(v - 1) <= 0.02,
        "{:.4f}",
    )
    for base, name in (("hf", "HF Trainer+PEFT default sampler"), ("trl", "TRL SFT packing")):
        for m, label in ((metric, unit), ("rss_mb", "peak RSS"), ("heldout", "held-out loss")):
            v = ratio("tunelab", base, m)
            if v is not None:
                line(
                    f"{label} tunelab / {name}", v, None, "{:.4f}" if m == "heldout" else "{:.2f}x"
                )
    v = ratio("hf-grouped+tcmalloc", "hf-grouped", "rss_mb")
    if v is not None:
        line("control: peak RSS HF grouped on tcmalloc / on glibc", v, None)
    for variant, switch in (
        ("tunelab-nochunk", "loss_chunk_size"),
        ("tunelab-torchdrop", "fast_dropout adapters"),
        ("tunelab-random", "group_by_length"),
        ("tunelab-glibc", "tcmalloc allocator"),
    ):
        speed, rss = ratio("tunelab", variant, metric), ratio("tunelab", variant, "rss_mb")
        if speed is not None:
            print(f"  switch {switch} (on by default): {speed:.2f}x {unit}, {rss:.2f}x peak RSS")


if __name__ == "__main__":
    main()
