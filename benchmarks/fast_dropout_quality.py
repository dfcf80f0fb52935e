"""Does ``train.fast_dropout`` train as well as torch's dropout? Several seeds, real data.

Runs the MiniLM classification examples (BBC News quickstart, Chinese news sentiment) with
``train.fast_dropout`` off and on for each seed, alternating, and prints test accuracy,
macro-F1 and training time per run, then the mean and spread per setting and the time ratio.

    .venv/bin/python benchmarks/fast_dropout_quality.py                      # 3 seeds, both examples
    .venv/bin/python benchmarks/fast_dropout_quality.py --seeds 1 --examples zh
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from seeded_runs import REPO, describe, train_and_read

EXAMPLES = {"bbc": "examples/quickstart.yaml", "zh": "examples/zh-inews-sentiment-minilm.yaml"}


def run(example: str, seed: int, fast: bool, out_root: Path) -> dict[str, float]:
    """Train one example with ``seed`` and fast dropout on/off; its test metrics and time."""
    out = out_root / f"{example}-seed{seed}-{'fast' if fast else 'torch'}"
    overrides = [f"train.seed={seed}", f"train.fast_dropout={str(fast).lower()}"]
    overrides += [f"output.dir={out}", "train.report_to=[]"]
    summary, results = train_and_read([EXAMPLES[example], *overrides], out)
    return {
        "accuracy": results["accuracy"],
        "f1_macro": results["f1_macro"],
        "train_s": summary["wall_time_s"],
        "tokens_per_s": summary["tokens_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--examples", nargs="+", default=list(EXAMPLES), choices=list(EXAMPLES))
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "fast-dropout-quality")
    args = parser.parse_args()

    rows: dict[tuple[str, bool], list[dict[str, float]]] = {}
    print(f"{'example':8} {'seed':>4} {'dropout':8} {'accuracy':>9} {'macro-F1':>9} {'train s':>8}")
    for example in args.examples:
        for seed in args.seeds:
            order = (False, True) if seed % 2 else (True, False)  # alternate who goes first
            for fast in order:
                result = run(example, seed, fast, args.out)
                rows.setdefault((example, fast), []).append(result)
                name = "fast" if fast else "torch"
                print(
                    f"{example:8} {seed:>4} {name:8} {result['accuracy']:>9.3f} "
                    f"{result['f1_macro']:>9.3f} {result['train_s']:>8.1f}",
                    flush=True,
                )
    print("\nmean ± standard deviation over seeds")
    for example in args.examples:
        torch_rows, fast_rows = rows[(example, False)], rows[(example, True)]
        for name, group in (("torch", torch_rows), ("fast", fast_rows)):
            accuracy = describe([r["accuracy"] for r in group])
            f1 = describe([r["f1_macro"] for r in group])
            print(f"{example:8} {name:6} accuracy {accuracy}  macro-F1 {f1}")
        speed = statistics.mean(r["tokens_per_s"] for r in fast_rows) / statistics.mean(
            r["tokens_per_s"] for r in torch_rows
        )
        print(f"{example:8} fast/torch training tokens/s: {speed:.2f}x")


if __name__ == "__main__":
    main()
