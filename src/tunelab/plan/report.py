"""Showing a plan: the rich table, the JSON rows, and the error when nothing fits."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from tunelab.errors import TunelabError
from tunelab.plan.rows import Plan, Row


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as JSON: its context and one object per row."""
    hw = plan.hardware
    return {
        "device": hw.device,
        "device_name": hw.name,
        "allocator": hw.allocator,
        "budget_mb": round(plan.budget_mb, 1),
        "budget_source": plan.budget_source,
        "effective_batch": plan.effective_batch,
        "train_examples": plan.data.examples,
        "max_length": plan.data.max_length,
        "mean_length": round(plan.data.mean_length, 1),
        "base_mb": round(plan.base_mb, 1),
        "skipped": plan.skipped,
        "probe_peak_mb": {k: round(v, 1) for k, v in plan.probe_measured.items()},
        "rows": [row.as_dict() for row in plan.rows],
    }


def describe_row(row: Row) -> str:
    """One configuration in words, e.g. ``lora fp32 micro-batch 4 x 2, checkpointing``."""
    extra = [", gradient checkpointing" if row.gradient_checkpointing else ""]
    if row.loss_chunk_size:
        extra.append(f", loss chunk {row.loss_chunk_size}")
    return (
        f"{row.method} {row.precision} micro-batch {row.micro_batch} x "
        f"{row.gradient_accumulation_steps}{''.join(extra)}"
    )


def compact_count(n: int) -> str:
    """``677765`` -> ``678k``, ``23392906`` -> ``23.4M`` (the exact count is in ``--json``)."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return str(n)


def print_plan(plan: Plan, console: Console) -> None:
    """The table, then which rows fit the budget."""
    hw, data = plan.hardware, plan.data
    console.print(
        f"{hw.name}: budget {plan.budget_mb:,.0f} MB ({plan.budget_source}); "
        f"{data.examples} train examples, longest {data.max_length} tokens, mean "
        f"{data.mean_length:.0f}; effective batch {plan.effective_batch}; process base "
        f"{plan.base_mb:,.0f} MB" + (f" ({hw.allocator} allocator)" if hw.device == "cpu" else ""),
        soft_wrap=True,
    )
    # fits an 80-column terminal (and a piped output, which rich renders 80 wide)
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
    for title in ("method", "prec", "ckpt", "chunk", "batch", "peak MB",
                  "step s", "epoch s", "params", "art MB", "fits"):  # fmt: skip
        left = title in ("method", "prec")
        table.add_column(title, justify="left" if left else "right", no_wrap=True)
    for row in plan.rows:
        table.add_row(
            row.method, row.precision, "yes" if row.gradient_checkpointing else "",
            str(row.loss_chunk_size or ""), f"{row.micro_batch} x {row.gradient_accumulation_steps}",
            f"{row.peak_memory_mb:,.0f}", f"{row.step_time_s:.3g}", f"{row.epoch_time_s:,.0f}",
            compact_count(row.trainable_params), f"{row.artifact_mb:,.1f}",
            "[green]yes[/]" if row.fits else "[red]no[/]",
        )  # fmt: skip
    console.print(table)
    for label, reason in plan.skipped.items():
        console.print(f"[dim]{label}: not applicable ({reason})[/]", soft_wrap=True)
    timed = (
        "measured by --probe"
        if any(r.timed_by == "probe" for r in plan.rows)
        else ("from FLOPs and the measured matmul speed (run with --probe to measure)")
    )
    console.print(
        "batch: micro-batch x gradient accumulation; params: trainable; art MB: the saved "
        f"artifact. Step times {timed}; {len(plan.fitting())} of {len(plan.rows)} rows fit",
        soft_wrap=True,
    )


def nothing_fits(plan: Plan) -> TunelabError:
    """The one-line error when no row fits: the smallest configuration and its estimate."""
    row = plan.smallest()
    return TunelabError(
        f"nothing fits the memory budget of {plan.budget_mb:,.0f} MB ({plan.budget_source}); "
        f"the smallest configuration is {describe_row(row)} at an estimated "
        f"{row.peak_memory_mb:,.0f} MB: raise the budget to at least "
        f"{row.peak_memory_mb * 1.05:,.0f} MB, shorten data.max_length, or use a smaller model"
    )
