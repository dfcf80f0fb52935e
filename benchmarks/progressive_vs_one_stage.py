"""Progressive fine-tuning (a head-only stage, then LoRA) vs one LoRA stage, same total steps.

Two datasets, in one go (``--datasets`` picks):

- ``bbc``: MiniLM on BBC News topics (examples/progressive.yaml and its one-stage twin), at
  batch 8 x 64 tokens; validation every 20 steps picks each stage's best checkpoint.
- ``zh``: Gemma-3-270M (GGUF, last-token pooling) on the Chinese news sentiment data
  (examples/zh-inews-sentiment.yaml: 320 training rows, 8 x 64 tokens, 150 test rows; no
  validation split, so each stage hands on its last weights). MiniLM cannot read this text
  (60% of its tokens are ``[UNK]``, docs/evaluation.md).

For each seed the one-stage run trains LoRA for ``steps`` steps; the progressive run trains
the head alone (freeze, ``top_n_layers: 0``) for ``head_steps`` steps at ``head_lr``, then
LoRA for the rest, so both take the same number of optimizer steps on the same split. The
two settings are run alternately per seed (who goes first alternates), each in a fresh
``tunelab train`` process. Prints test accuracy, macro-F1 and training time per run, then
mean ± sample standard deviation per setting and the paired progressive - one-stage gap.

    nice -n 10 .venv/bin/python benchmarks/progressive_vs_one_stage.py            # 3 seeds
    nice -n 10 .venv/bin/python benchmarks/progressive_vs_one_stage.py --datasets bbc \\
        --seeds 1 --steps 20 --head-steps 5
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from seeded_runs import REPO, describe, train_and_read
from tunelab.mappings import deep_merge


@dataclass(frozen=True)
class Bench:
    """One dataset's comparison: the example it starts from and its sizes."""

    name: str
    example: Path
    steps: int
    head_steps: int
    head_lr: float
    lora_lr: float
    edits: dict[str, Any] = field(default_factory=dict)


BENCHES = {
    "bbc": Bench(
        "bbc",
        REPO / "examples" / "progressive.yaml",
        steps=60,
        head_steps=15,
        head_lr=1e-2,
        lora_lr=2e-3,
        edits={"data": {"max_length": 64}, "train": {"batch_size": 8, "eval_every": 20}},
    ),
    "zh": Bench(
        "zh",
        REPO / "examples" / "zh-inews-sentiment.yaml",
        steps=20,
        head_steps=6,
        head_lr=1e-2,
        lora_lr=5e-4,
        edits={"eval": {"split": "test", "max_samples": 150}},
    ),
}


def config(bench: Bench, seed: int, progressive: bool, out: Path) -> dict[str, Any]:
    """``bench``'s example with ``seed``: one LoRA stage, or the head stage and then LoRA."""
    raw = deep_merge(yaml.safe_load(bench.example.read_text(encoding="utf-8")), bench.edits)
    raw["output"] = {"dir": str(out)}
    raw["train"].update(seed=seed, report_to=[])
    raw.pop("stages", None)
    lora_steps = bench.steps - bench.head_steps
    if progressive:
        raw["stages"] = [
            {
                "name": "head",
                "method": {"name": "freeze", "freeze": {"top_n_layers": 0}},
                "train": {"lr": bench.head_lr, "max_steps": bench.head_steps, "warmup_ratio": 0.0},
            },
            {
                "name": "lora",
                "train": {"lr": bench.lora_lr, "max_steps": lora_steps, "warmup_ratio": 0.06},
            },
        ]
    else:
        raw["train"].update(lr=bench.lora_lr, max_steps=bench.steps, warmup_ratio=0.06)
    raw["train"].pop("warmup_steps", None)
    return raw


def run(bench: Bench, seed: int, progressive: bool, root: Path) -> dict[str, float]:
    """Train one setting with ``seed``; its test metrics, steps and training time."""
    name = f"{bench.name}-seed{seed}-{'progressive' if progressive else 'one-stage'}"
    out = root / name
    path = root / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config(bench, seed, progressive, out), allow_unicode=True))
    summary, results = train_and_read([str(path), "--no-resume"], out)
    return {
        "accuracy": results["accuracy"],
        "f1_macro": results["f1_macro"],
        "steps": summary["steps"],
        "train_s": summary["wall_time_s"],
    }


def compare(bench: Bench, seeds: list[int], root: Path) -> dict[bool, list[dict[str, float]]]:
    """Both settings at every seed, alternating who goes first; the per-run rows."""
    rows: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for seed in seeds:
        for progressive in (False, True) if seed % 2 else (True, False):
            result = run(bench, seed, progressive, root)
            rows[progressive].append(result)
            setting = "progressive" if progressive else "one stage"
            print(
                f"{bench.name:>4} {seed:>4} {setting:12} {result['steps']:>5} "
                f"{result['accuracy']:>9.3f} {result['f1_macro']:>9.3f} {result['train_s']:>8.1f}",
                flush=True,
            )
    return rows


def table(results: dict[str, dict[bool, list[dict[str, float]]]], benches: list[Bench]) -> None:
    """The summary: mean ± spread per dataset and setting, and the paired gap."""
    print("\n| data | setting | steps | test accuracy | test macro-F1 | train s |")
    print("|---|---|---|---|---|---|")
    for bench in benches:
        for progressive, rows in results[bench.name].items():
            setting = (
                f"head {bench.head_steps} + LoRA {bench.steps - bench.head_steps}"
                if progressive
                else f"LoRA {bench.steps}"
            )
            cells = [describe([r[key] for r in rows]) for key in ("accuracy", "f1_macro")]
            time = statistics.mean(r["train_s"] for r in rows)
            print(
                f"| {bench.name} | {setting} | {bench.steps} | {' | '.join(cells)} | {time:.0f} |"
            )
    print()
    for bench in benches:
        one, prog = results[bench.name][False], results[bench.name][True]
        for key in ("accuracy", "f1_macro"):
            gaps = [p[key] - o[key] for p, o in zip(prog, one, strict=True)]
            print(
                f"{bench.name}: progressive - one stage {key} = {describe(gaps)} "
                f"(per seed: {', '.join(f'{g:+.3f}' for g in gaps)})"
            )
        ratio = statistics.mean(r["train_s"] for r in prog) / statistics.mean(
            r["train_s"] for r in one
        )
        print(f"{bench.name}: training time progressive / one stage {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(BENCHES), default=["bbc", "zh"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, help="total optimizer steps (default: per dataset)")
    parser.add_argument("--head-steps", type=int, help="steps of the head stage")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "progressive-vs-one-stage")
    args = parser.parse_args()

    benches = []
    for name in args.datasets:
        bench = BENCHES[name]
        if args.steps is not None:
            bench = replace(bench, steps=args.steps)
        if args.head_steps is not None:
            bench = replace(bench, head_steps=args.head_steps)
        benches.append(bench)
    print(
        f"{'data':>4} {'seed':>4} {'setting':12} {'steps':>5} {'accuracy':>9} {'macro-F1':>9} {'train s':>8}"
    )
    results = {bench.name: compare(bench, args.seeds, args.out) for bench in benches}
    table(results, benches)


if __name__ == "__main__":
    main()
