"""Progressive fine-tuning (a head-only stage, then LoRA) vs one LoRA stage, same total steps.

MiniLM on BBC News (examples/progressive.yaml and its one-stage twin): for each seed, the
one-stage run trains LoRA for ``--steps`` steps; the progressive run trains the head alone for
``--head-steps`` steps, then LoRA for the rest, so both take the same number of optimizer
steps on the same split. The two are run alternately per seed. Prints test accuracy,
macro-F1 and training time per run, then the mean and spread per setting.

    nice -n 10 .venv/bin/python benchmarks/progressive_vs_one_stage.py            # 3 seeds
    nice -n 10 .venv/bin/python benchmarks/progressive_vs_one_stage.py --seeds 1 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import yaml

from seeded_runs import REPO, describe, train_and_read

EXAMPLE = REPO / "examples" / "progressive.yaml"


def config(seed: int, progressive: bool, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The example with ``seed``; one stage of LoRA, or the head stage and then LoRA."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["output"]["dir"] = str(out)
    raw["train"].update(seed=seed, report_to=[], eval_every=args.eval_every)
    head, lora = raw.pop("stages")
    if progressive:
        head["train"]["max_steps"] = args.head_steps
        lora["train"]["max_steps"] = args.steps - args.head_steps
        raw["stages"] = [head, lora]
    else:
        raw["train"].update(lora["train"], max_steps=args.steps)
    return raw


def run(seed: int, progressive: bool, args: argparse.Namespace) -> dict[str, float]:
    """Train one setting with ``seed``; its test metrics, steps and training time."""
    name = f"seed{seed}-{'progressive' if progressive else 'one-stage'}"
    out = args.out / name
    path = args.out / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config(seed, progressive, args, out)))
    summary, results = train_and_read([str(path), "--no-resume"], out)
    return {
        "accuracy": results["accuracy"],
        "f1_macro": results["f1_macro"],
        "steps": summary["steps"],
        "train_s": summary["wall_time_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=80, help="total optimizer steps")
    parser.add_argument("--head-steps", type=int, default=20, help="steps of the head stage")
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "progressive-vs-one-stage")
    args = parser.parse_args()

    rows: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    print(f"{'seed':>4} {'setting':12} {'steps':>5} {'accuracy':>9} {'macro-F1':>9} {'train s':>8}")
    for seed in args.seeds:
        order = (False, True) if seed % 2 else (True, False)  # alternate who goes first
        for progressive in order:
            result = run(seed, progressive, args)
            rows[progressive].append(result)
            setting = "progressive" if progressive else "one stage"
            print(
                f"{seed:>4} {setting:12} {result['steps']:>5} {result['accuracy']:>9.3f} "
                f"{result['f1_macro']:>9.3f} {result['train_s']:>8.1f}",
                flush=True,
            )
    print(f"\n{'setting':12} {'accuracy':>15} {'macro-F1':>15} {'train s':>15}")
    for progressive, results in rows.items():
        setting = "progressive" if progressive else "one stage"
        cells = [describe([r[key] for r in results]) for key in ("accuracy", "f1_macro")]
        time = describe([r["train_s"] for r in results])
        print(f"{setting:12} {cells[0]:>15} {cells[1]:>15} {time:>15}")
    one, prog = (statistics.mean(r["train_s"] for r in rows[k]) for k in (False, True))
    print(f"\ntraining time progressive / one stage: {prog / one:.2f}x")


if __name__ == "__main__":
    main()
