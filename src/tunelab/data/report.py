"""Printing the data report: what cleaning removed, split sizes, labels, token lengths, its
warnings (the figures are computed in ``tunelab.data.stats``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from tunelab.data.pipeline import PreparedData


def print_warnings(report: dict[str, Any], console: Console) -> None:
    """Print the data report's warnings, one line each."""
    for warning in report["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def _snippet(example: dict[str, Any] | None, width: int = 70) -> str:
    if not example:
        return ""
    row = {key: value for key, value in example["row"].items() if value is not None}
    text = json.dumps(row, ensure_ascii=False)
    text = text if len(text) <= width else text[: width - 1] + "…"
    reason = f" ({example['reason']})" if example.get("reason") else ""
    return f"{Path(example['where']).name}{reason}: {text}"


def print_report(prepared: PreparedData, console: Console) -> None:
    """A short summary: rows and token lengths per split, rows removed, where the report is."""
    report = prepared.report
    source = "cache" if prepared.from_cache else "files"
    console.print(f"[bold]Data[/bold] ({report['format']}, from {source})")
    for name, rows in report["rows"].items():
        stats = report["token_lengths"].get(name)
        if stats is None:  # a non-text format (images, audio): rows only
            console.print(f"  {name}: {rows} rows")
            continue
        console.print(
            f"  {name}: {rows} rows, tokens p50 {stats['p50']:g} / p90 {stats['p90']:g} / "
            f"max {stats['max']}, {report['truncated'][name]} truncated, "
            f"unknown tokens {report['unk_rate'][name]:.1%}"
        )
    removed = {k: v["removed"] for k, v in report["cleaning"]["removed"].items() if v["removed"]}
    summary = ", ".join(f"{k} {v}" for k, v in removed.items()) or "nothing"
    console.print(f"  removed: {summary}")
    if report.get("report_path"):
        console.print(f"  report: {report['report_path']}")
    print_warnings(report, console)


def print_inspection(prepared: PreparedData, console: Console) -> None:
    """Tables: rows and token lengths per split, label distribution, cleaning with examples."""
    report = prepared.report
    limit = report.get("max_length")
    splits = Table(title=f"Splits (max_length {limit})" if limit else "Splits")
    columns = ("split", "rows", "p50", "p90", "p99", "max", "truncated", "unknown tokens")
    for column in columns:
        splits.add_column(column, justify="left" if column == "split" else "right")
    for name, rows in report["rows"].items():
        stats = report["token_lengths"].get(name)
        if stats is None:  # a non-text format: no token figures
            splits.add_row(name, str(rows), *["-"] * (len(columns) - 2))
            continue
        cells = [f"{stats[k]:g}" for k in ("p50", "p90", "p99")]
        unknown = f"{report['unk_rate'][name]:.1%}"
        splits.add_row(
            name, str(rows), *cells, str(stats["max"]), str(report["truncated"][name]), unknown
        )
    console.print(splits)
    if report.get("labels"):
        console.print(_label_table(report["labels"]))
    console.print(_cleaning_table(report["cleaning"]))
    print_warnings(report, console)


def _label_table(labels: dict[str, dict[str, int]]) -> Table:
    table = Table(title="Labels")
    table.add_column("label")
    for name in labels:
        table.add_column(name, justify="right")
    names = sorted({label for counts in labels.values() for label in counts})
    for label in names:
        table.add_row(label, *(str(labels[s].get(label, 0)) for s in labels))
    return table


def _cleaning_table(cleaning: dict[str, Any]) -> Table:
    table = Table(title=f"Cleaning ({cleaning['normalized_rows']} rows changed by normalisation)")
    table.add_column("step")
    table.add_column("removed", justify="right")
    table.add_column("example", overflow="fold")
    for name, step in cleaning["removed"].items():
        table.add_row(name, str(step["removed"]), _snippet(step["example"]))
    if not cleaning["removed"]:
        table.add_row("(none)", "0", "")
    return table
