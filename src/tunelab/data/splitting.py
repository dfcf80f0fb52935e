"""Seeded subsampling, train/validation/test splits (stratified by label) and split hygiene."""

from __future__ import annotations

import random
from collections import defaultdict

from tunelab.config import SplitConfig
from tunelab.data.cleaning import CleanLog
from tunelab.data.formats import content_key
from tunelab.data.loading import Row
from tunelab.errors import TunelabError

SPLITS = ("train", "validation", "test")


def subsample(rows: list[Row], max_samples: int | None, seed: int) -> list[Row]:
    """At most ``max_samples`` rows, chosen with ``seed``, in their original order."""
    if max_samples is None or len(rows) <= max_samples:
        return rows
    chosen = sorted(random.Random(seed).sample(range(len(rows)), max_samples))
    return [rows[i] for i in chosen]


def _count(n: int, fraction: float) -> int:
    """``n * fraction`` rounded half up."""
    return int(n * fraction + 0.5)


def allocate(indices: list[int], fractions: dict[str, float]) -> dict[str, list[int]]:
    """Cut shuffled ``indices`` into test, validation and train; train keeps at least one row."""
    n = len(indices)
    n_test = min(_count(n, fractions["test"]), max(n - 1, 0))
    n_val = min(_count(n, fractions["validation"]), max(n - 1 - n_test, 0))
    n_train = max(min(_count(n, fractions["train"]), n - n_test - n_val), min(n, 1))
    return {
        "test": indices[:n_test],
        "validation": indices[n_test : n_test + n_val],
        "train": indices[n_test + n_val : n_test + n_val + n_train],
    }


def split_indices(
    n: int, labels: list[str] | None, fractions: dict[str, float], seed: int
) -> dict[str, list[int]]:
    """Seeded split of ``range(n)``; stratified when ``labels`` is given (one cut per label)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index in range(n):
        groups[labels[index] if labels else ""].append(index)
    rng = random.Random(seed)
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        for name, chosen in allocate(members, fractions).items():
            out[name].extend(chosen)
    return {name: sorted(chosen) for name, chosen in out.items()}


def split_rows(
    rows: list[Row], cfg: SplitConfig, given: set[str], labels: list[str] | None
) -> dict[str, list[Row]]:
    """Split ``rows``; the share of a split given as a file (in ``given``) goes to train."""
    fractions = {name: 0.0 if name in given else getattr(cfg, name) for name in SPLITS}
    fractions["train"] = cfg.train + sum(getattr(cfg, name) for name in given)
    chosen = split_indices(len(rows), labels if cfg.stratify else None, fractions, cfg.seed)
    return {name: [rows[i] for i in chosen[name]] for name in SPLITS}


def drop_cross_split_duplicates(
    splits: dict[str, list[Row]], log: CleanLog
) -> dict[str, list[Row]]:
    """Remove from validation and test every example already in an earlier split."""
    step = log.step("cross_split_duplicates")
    seen: set[str] = set()
    out = {}
    for name in SPLITS:
        kept = []
        for row in splits.get(name, []):
            key = content_key(row.data)
            if key in seen and name != "train":
                step.add(row)
            else:
                kept.append(row)
        seen.update(content_key(row.data) for row in kept)
        if splits.get(name) and not kept:
            raise TunelabError(
                f"{name}: no rows left after cleaning; step 'cross_split_duplicates' removed "
                f"all {len(splits[name])} rows (each is identical to an earlier split's row)"
            )
        out[name] = kept
    return out


def label_names_of(splits: dict[str, list[Row]]) -> list[str]:
    """Sorted train labels; error when validation or test has a label train lacks."""
    names = sorted({row.data["label"] for row in splits["train"]})
    for split in ("validation", "test"):
        unknown = sorted({row.data["label"] for row in splits.get(split, [])} - set(names))
        if unknown:
            raise TunelabError(
                f"{split} split has label(s) {', '.join(map(repr, unknown))} that the train "
                f"split does not have (train labels: {', '.join(map(repr, names))})"
            )
    return names


def label_warnings(labels: dict[str, dict[str, int]], names: list[str]) -> list[str]:
    """Warnings for labels with a single row, and for evaluated splits that lack labels.

    ``labels`` maps each split to its rows per label. Macro F1 averages over the labels the
    evaluated split has (see docs/evaluation.md), so a missing label is left out of it.
    """
    totals = {name: sum(counts.get(name, 0) for counts in labels.values()) for name in names}
    single = [name for name, total in totals.items() if total == 1]
    out = []
    if single:
        out.append(
            f"label(s) {_quoted(single)} have a single row: too few to learn or to evaluate; "
            "add rows or merge the label into another"
        )
    for split in ("validation", "test"):
        missing = [name for name in names if split in labels and not labels[split].get(name)]
        if missing:
            out.append(
                f"{split} split has no rows of label(s) {_quoted(missing)} "
                f"({len(names) - len(missing)} of {len(names)} labels present): f1_macro averages "
                "only the labels present; per-class support is in eval_results.json"
            )
    return out


def _quoted(names: list[str]) -> str:
    return ", ".join(map(repr, names))
