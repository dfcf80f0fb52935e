"""Checks on the data report: heavy truncation, label imbalance, a tiny dataset for full
fine-tuning, many duplicates."""

from __future__ import annotations

import math
from collections.abc import Iterator

from tunelab.doctor.finding import Finding
from tunelab.doctor.record import RunRecord

TRUNCATED = 0.10  # of the train rows
IMBALANCE = 5.0  # largest class / smallest class
TINY_ROWS = 1000  # full fine-tuning on fewer rows ...
TOKENS_PER_PARAM = 0.02  # ... and fewer train tokens than this per trainable parameter
DUPLICATES = 0.10  # of the rows before cleaning


def truncation(run: RunRecord) -> Iterator[Finding]:
    """Many train rows longer than ``data.max_length``. Rows whose whole response was cut off
    were dropped (``no_loss_dropped``): they count as cut, and their lengths are not in the
    report's token lengths, so the advice then names no length the kept rows would suggest."""
    report = run.data_report or {}
    dropped = (report.get("no_loss_dropped") or {}).get("train", 0)
    rows = (report.get("rows") or {}).get("train", 0) + dropped
    cut = (report.get("truncated") or {}).get("train", 0)
    if not rows or cut / rows < TRUNCATED:
        return
    lengths = (report.get("token_lengths") or {}).get("train", {})
    limit = report.get("max_length") or run.section("data").get("max_length")
    p99 = lengths.get("p99")
    suggested = int(math.ceil(p99 / 64) * 64) if p99 else 0
    if suggested > (limit or 0) and not dropped:
        target = f"data.max_length: {suggested} (covers 99% of rows)"
    else:
        target = f"a data.max_length above {limit}"
    side = run.section("data").get("truncation_side")
    evidence = (
        f"{cut} of {rows} train rows ({cut / rows:.0%}) are longer than data.max_length {limit} "
        f"(token lengths p50 {lengths.get('p50')}, p90 {lengths.get('p90')}, max {lengths.get('max')}"
        + (" of the rows kept)" if dropped else ")")
    )
    if dropped:
        evidence += (
            f"; {dropped} of them lost their whole response and were dropped "
            "(no_loss_after_truncation)"
        )
    fix = f"{target}, or shorter examples"
    if dropped and side != "left":
        fix += "; data.truncation_side: left keeps the responses"
    elif side:
        fix += f"; rows are cut on the {side} (data.truncation_side)"
    yield Finding("truncation", "heavy truncation: many training rows are cut", evidence, fix)


def label_imbalance(run: RunRecord) -> Iterator[Finding]:
    counts = ((run.data_report or {}).get("labels") or {}).get("train") or {}
    if len(counts) < 2:
        return
    big, small = max(counts, key=counts.get), min(counts, key=counts.get)
    ratio = counts[big] / max(counts[small], 1)
    if ratio < IMBALANCE:
        return
    metric = run.train_setting("early_stopping", {}).get("metric", "eval_loss")
    pick = "" if "f1" in metric else "; train.early_stopping.metric: eval_f1_macro"
    yield Finding(
        "label_imbalance",
        "label imbalance in the train split",
        f"{big!r} has {counts[big]} rows, {small!r} {counts[small]} ({ratio:.1f}x)",
        f"more rows of {small!r} (or fewer of {big!r}) in data.path{pick} "
        "(accuracy hides a model that ignores the rare labels)",
    )


def tiny_full_finetune(run: RunRecord) -> Iterator[Finding]:
    if run.method != "full":
        return
    report, summary = run.data_report or {}, run.summary or {}
    rows = (report.get("rows") or {}).get("train", 0)
    mean = ((report.get("token_lengths") or {}).get("train") or {}).get("mean", 0)
    params = summary.get("trainable_params", 0)
    tokens = rows * mean
    if not rows or not params or rows >= TINY_ROWS or tokens >= TOKENS_PER_PARAM * params:
        return
    yield Finding(
        "tiny_dataset",
        "tiny dataset for full fine-tuning",
        f"{rows} train rows (~{tokens:,.0f} tokens) for {params:,} trainable parameters "
        f"({tokens / params:.3f} tokens per parameter)",
        "method.name: lora (far fewer trainable parameters), fewer train.epochs, or more data",
    )


def duplicates(run: RunRecord) -> Iterator[Finding]:
    report = run.data_report or {}
    removed = (report.get("cleaning") or {}).get("removed") or {}
    kinds = ("duplicates", "near_duplicates", "cross_split_duplicates")
    dropped = {k: (removed.get(k) or {}).get("removed", 0) for k in kinds}
    total_removed = sum(
        (v or {}).get("removed", 0) for v in removed.values() if isinstance(v, dict)
    )
    before = sum((report.get("rows") or {}).values()) + total_removed
    count = sum(dropped.values())
    if not before or count / before < DUPLICATES:
        return
    example = next(
        (removed[k].get("example") for k in kinds if (removed.get(k) or {}).get("example")), None
    )
    near = "" if run.section("data").get("clean", {}).get("near_dedup") else (
        "; near-duplicates are not searched: data.clean.near_dedup: true"
    )  # fmt: skip
    yield Finding(
        "duplicates",
        "many duplicate rows in the data",
        f"{count} of {before} rows were duplicates ({count / before:.0%}: "
        + ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
        + (f"; e.g. {str(example)[:80]!r}" if example else "")
        + "); the model sees fewer distinct examples than the file suggests",
        f"deduplicate or widen the source data{near}",
        "info",
    )


CHECKS = (truncation, label_imbalance, tiny_full_finetune, duplicates)
