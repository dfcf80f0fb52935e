"""Multi-task vs single-task on two real classification tasks, at equal steps per task.

``examples/multitask.yaml`` (MiniLM + LoRA, BBC News topics and chatterbot conversation
categories) trained three ways per seed, one after the other: both tasks together for
``2 x --steps`` steps with ``mixing: weights`` at equal weights (each task gets about
``--steps`` batches; the realised count per task is read from the sampler state), then
``bbc`` alone and ``chat`` alone, each for exactly as many steps as the multi-task run gave
its batches. No validation-based checkpoint choice: the last weights are scored on each
task's test split. Prints each run's test accuracy and
macro-F1 per task, then mean and spread over the seeds and the multi - single difference.

    nice -n 10 .venv/bin/python benchmarks/multitask_vs_single.py --seeds 3 --steps 60
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "multitask.yaml"
TASKS = ("bbc", "chat")


def base_raw(seed: int, steps: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The example with a seed, a step count, validation only at the end, test-split scoring."""
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    raw["train"].update(seed=seed, max_steps=steps, eval_every=steps, report_to=[])
    raw["train"]["batch_size"] = args.batch_size
    raw["train"]["early_stopping"] = {"metric": "eval_loss"}
    raw["eval"] = {"split": "test", "at_end": True}
    raw["output"] = {"dir": str(out)}
    for task in raw["data"]["tasks"]:
        task["max_length"] = args.max_length
    return raw


def single(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """``raw`` trained on task ``name`` alone (its data block as the plain ``data``)."""
    one = copy.deepcopy(raw)
    (task,) = [t for t in one["data"]["tasks"] if t["name"] == name]
    one["data"] = {k: v for k, v in task.items() if k != "name"}
    return one


def train_and_score(
    raw: dict[str, Any],
    name: str | None = None,
    keys: tuple[str, ...] = ("accuracy", "f1_macro"),
    tasks: tuple[str, ...] = TASKS,
) -> dict[str, Any]:
    """Train ``raw``; the test metrics ``keys`` per task (``name``: the one dataset's task),
    and under ``"run"`` the wall time and each of ``tasks``' batches (multi-task)."""
    from tunelab.config import load_config
    from tunelab.train import train

    result = train(load_config(raw), resume=False)
    run_dir = Path(raw["output"]["dir"])
    record = json.loads((run_dir / "eval_results.json").read_text(encoding="utf-8"))
    per_task = record["tasks"] if "tasks" in record else {name: record["metrics"]}
    scores = {name: {key: m[key] for key in keys} for name, m in per_task.items()}
    scores["run"] = {"wall_s": result.summary["wall_time_s"]}
    state = sorted(
        run_dir.glob("checkpoints/step-*/state.json"), key=lambda p: int(p.parent.name[5:])
    )
    if "tasks" in record and state:
        batches = json.loads(state[-1].read_text(encoding="utf-8"))["sampler"]["task_batches"]
        scores["run"]["task_batches"] = dict(zip(tasks, batches, strict=True))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="steps per task")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-multitask")
    args = parser.parse_args()
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for seed in range(args.seeds):
        raw = base_raw(seed, 2 * args.steps, args, args.out / f"multi-{seed}")
        raw["data"]["mixing"] = "weights"  # equal weights: about --steps steps per task
        got = train_and_score(raw)
        for name in TASKS:
            rows.setdefault(("multi", name), []).append(got[name])
        print(f"seed {seed} multi: {got}", flush=True)
        for name in TASKS:  # as many steps as the multi-task run gave this task's batches
            steps = got["run"]["task_batches"][name]
            raw = base_raw(seed, steps, args, args.out / f"{name}-{seed}")
            one = train_and_score(single(raw, name), name)
            rows.setdefault(("single", name), []).append(one[name])
            print(f"seed {seed} single {name} ({steps} steps): {one}", flush=True)
    print(
        f"\n{args.seeds} seed(s), {args.steps} steps per task, batch {args.batch_size}, "
        f"max_length {args.max_length}"
    )
    print("| task | setting | test accuracy | test macro-F1 |")
    print("|---|---|---|---|")
    for name in TASKS:
        for setting in ("single", "multi"):
            values = rows[(setting, name)]
            cells = [mean_spread([v[k] for v in values]) for k in ("accuracy", "f1_macro")]
            print(f"| {name} | {setting} | {cells[0]} | {cells[1]} |")
        for key in ("accuracy", "f1_macro"):
            diffs = [
                m[key] - s[key]
                for m, s in zip(rows[("multi", name)], rows[("single", name)], strict=True)
            ]
            print(f"{name}: multi - single {key} = {mean_spread(diffs)} (per seed: {diffs})")


def mean_spread(values: list[float]) -> str:
    """Mean ± sample standard deviation, 4 decimals."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {spread:.4f}"


if __name__ == "__main__":
    sys.exit(main())
