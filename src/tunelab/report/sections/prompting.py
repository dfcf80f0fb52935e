"""Prompting vs fine-tuning: ``prompting_comparison.json`` (``tunelab compare-prompting``)."""

from __future__ import annotations

from tunelab.report.page import Page, note
from tunelab.report.rundata import RunData


def render(run: RunData, page: Page) -> str | None:
    record = run.prompting
    if not record or not record.get("rows"):
        return None
    metric = record.get("metric", "metric")
    header = ["setting", metric, "wall time (s)", "extra artifact (MiB)", "latency p50 (ms)"]
    rows = [
        (r.get("setting"), r.get("value"), r.get("wall_time_s"), r.get("extra_artifact_mb"),
         r.get("latency_p50_ms"))
        for r in record["rows"]
    ]  # fmt: skip
    values = {i: r[1] for i, r in enumerate(rows) if isinstance(r[1], int | float)}
    best = set()
    if len(set(values.values())) > 1:  # mark the best only where the settings differ
        top = max(values.values())
        best = {(i, 1) for i, v in values.items() if v == top}
    parts = [note(record["note"])] if record.get("note") else []
    parts += [note(r["note"]) for r in record["rows"] if r.get("note")]
    parts.append(f'<p class="muted">{record.get("split", "")} split</p>')
    parts.append(page.table(header, rows, best, name="prompting"))
    return "".join(parts)
