"""Evaluation results: the metrics (beside the base model's where ``eval_base/`` has them);
for classification per-class scores, the confusion matrix and a reliability diagram; for
generation the prompt / reference / prediction samples with their per-example scores."""

from __future__ import annotations

from typing import Any

from tunelab.report.classes import confusion_chart, per_class_table, reliability, reliability_chart
from tunelab.report.page import Page, esc, note
from tunelab.report.rundata import RunData
from tunelab.report.samples import samples_table


def scalars(results: dict[str, Any] | None) -> dict[str, float | int]:
    """The numeric metrics of an ``eval_results.json``."""
    metrics = (results or {}).get("metrics") or {}
    return {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def metrics_table(run: RunData, page: Page) -> str:
    """One row per metric: the fine-tuned model's value (and the base model's)."""
    mine, base = scalars(run.eval_results), scalars(run.base_results)
    header = ["metric", "fine-tuned"] + (["base model"] if base else [])
    rows = [(k, v, base.get(k)) if base else (k, v) for k, v in mine.items()]
    rows += [(k, None, v) for k, v in base.items() if k not in mine]
    return page.table(header, rows, name="metrics")


def render(run: RunData, page: Page) -> str | None:
    results = run.eval_results
    if results is None:
        if run.base_results is None:
            return note("no eval_results.json yet: run tunelab eval RUN_DIR (or wait for the end)")
        results = {}
    info = results.get("split"), results.get("num_examples")
    head = f'<p class="muted">{esc(info[0])} split, {esc(info[1])} examples</p>' if info[0] else ""
    parts = [head, metrics_table(run, page)]
    metrics = results.get("metrics") or {}
    charts = []
    if metrics.get("confusion_matrix") and metrics.get("labels"):
        charts.append(confusion_chart(page, metrics["confusion_matrix"], metrics["labels"]))
    rel = reliability(run.predictions) if run.predictions else None
    if rel is not None:
        charts.append(reliability_chart(page, rel))
    if metrics.get("per_class"):
        parts.append("<h3>per class</h3>" + per_class_table(page, metrics["per_class"]))
    if charts:
        parts.append(f'<div class="grid">{"".join(charts)}</div>')
    if run.predictions and run.task != "classification":
        table = samples_table(page, run.predictions.samples, run.predictions.count)
        if table:
            parts.append("<h3>samples</h3>" + table)
    return "".join(parts)
