"""Several runs' curves overlaid: train loss, each validation metric, throughput."""

from __future__ import annotations

from collections.abc import Sequence

from tunelab.report.charts import COLORS, last_step, line, series, step_axes
from tunelab.report.page import Page
from tunelab.report.rundata import RunData
from tunelab.report.sections.curves import eval_keys


def overlay(page: Page, runs: Sequence[RunData], key: str, kind: str, title: str) -> str | None:
    """One chart with ``key`` of every run that logged it (``kind``: train or eval rows)."""
    traces = []
    for index, run in enumerate(runs):
        rows = run.train_rows() if kind == "train" else run.eval_rows()
        xs, ys = series(rows, key)
        if xs:
            traces.append(line(run.name, xs, ys, COLORS[index % len(COLORS)]))
    if not traces:
        return None
    return page.chart({"data": traces, "layout": step_axes(key, last_step(runs))}, title)


def render(runs: Sequence[RunData], page: Page) -> str | None:
    keys: list[str] = []
    for run in runs:
        keys += [k for k in eval_keys(run) if k not in keys]
    charts = [overlay(page, runs, "loss", "train", "train loss")]
    charts += [overlay(page, runs, k, "eval", f"validation: {k}") for k in keys]
    charts.append(overlay(page, runs, "tokens_per_s", "train", "throughput (tokens/s)"))
    drawn = [c for c in charts if c]
    return f'<div class="grid">{"".join(drawn)}</div>' if drawn else None
