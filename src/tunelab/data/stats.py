"""The data report's figures: token-length percentiles and histograms, rows per label, unknown-token warnings.

Computed by the pipeline (``tunelab.data.pipeline``) and printed by ``tunelab.data.report``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 99)
HISTOGRAM_BINS = 30
UNK_WARN_RATE = 0.05  # warn when more than 5% of a split's tokens are the unknown token


def length_stats(lengths: list[int]) -> dict[str, float]:
    """p50/p90/p99/max/mean of token lengths (before truncation)."""
    values = np.asarray(lengths, dtype=float)
    stats = {f"p{q}": round(float(np.percentile(values, q)), 1) for q in PERCENTILES}
    stats["max"] = int(values.max())
    stats["mean"] = round(float(values.mean()), 1)
    return stats


def length_histograms(
    lengths: dict[str, list[int]], max_length: int, bins: int = HISTOGRAM_BINS
) -> dict[str, dict[str, list[float]]]:
    """Token-length histograms per split on shared bins from 0 to the larger of
    ``max_length`` and the 99th percentile of all lengths; longer rows count in the last bin."""
    every = [n for values in lengths.values() for n in values]
    if not every:
        return {}
    upper = max(float(np.percentile(every, 99)), float(max_length), 1.0)
    edges = np.linspace(0.0, upper, bins + 1)
    out = {}
    for name, values in lengths.items():
        counts, _ = np.histogram(np.minimum(np.asarray(values, dtype=float), upper), edges)
        out[name] = {"edges": [round(float(e), 1) for e in edges], "counts": counts.tolist()}
    return out


def label_counts(examples: list[dict[str, Any]]) -> dict[str, int]:
    """Rows per label, sorted by label."""
    return dict(sorted(Counter(ex["label"] for ex in examples).items()))


def unknown_warnings(report: dict[str, Any]) -> list[str]:
    """A warning when a split's unknown-token rate is above ``UNK_WARN_RATE``."""
    high = {name: rate for name, rate in report["unk_rate"].items() if rate > UNK_WARN_RATE}
    if not high:
        return []
    rates = ", ".join(f"{rate:.1%} of {name}" for name, rate in high.items())
    return [
        f"the tokenizer's unknown token {report['unk_token']!r} is {rates} tokens (warned above "
        f"{UNK_WARN_RATE:.0%}): the model cannot read this text and will learn little from it; "
        "use a model whose vocabulary covers the data's language (see docs/data.md)"
    ]
