"""Checks on speed: much padding with packing off, bf16 available but unused."""

from __future__ import annotations

from collections.abc import Iterator

from tunelab.doctor.finding import Finding
from tunelab.doctor.record import RunRecord

PADDING = 0.30  # of the token slots of the batches


def padding(run: RunRecord) -> Iterator[Finding]:
    share = (run.summary or {}).get("padding_fraction")
    if share is None or share < PADDING or run.train_setting("packing"):
        return
    fixes = []
    if run.task == "causal_lm":
        fixes.append("train.packing: true (examples packed per row, no cross-example attention)")
    if not run.train_setting("group_by_length", True):
        fixes.append("train.group_by_length: true")
    if not fixes:
        fixes.append("a smaller train.batch_size, or data of more even lengths")
    yield Finding(
        "padding",
        "slow training: much of each batch is padding",
        f"{share:.0%} of the token slots were padding (train.packing off, "
        f"train.group_by_length {run.train_setting('group_by_length', True)})",
        ", or ".join(fixes),
        "info",
    )


def bf16_unused(run: RunRecord) -> Iterator[Finding]:
    summary = run.summary or {}
    if not summary.get("bf16_available") or run.train_setting("precision", "fp32") != "fp32":
        return
    yield Finding(
        "bf16_unused",
        "slow training: bf16 is available but the run used fp32",
        "this device has native bf16 matmul (train_summary.json bf16_available) and "
        "train.precision was fp32",
        "train.precision: bf16 (1.5-2.2x faster and lighter on a CPU with native bf16, docs/performance.md; compare its validation loss with this run's)",
        "info",
    )


CHECKS = (padding, bf16_unused)
