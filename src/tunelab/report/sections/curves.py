"""Training curves of one run: loss, every validation metric, learning rate, gradient norm,
tokens/s, memory and the fp16 loss scale, with the stage boundaries drawn on each."""

from __future__ import annotations

from tunelab.mappings import deep_merge
from tunelab.report.charts import (
    COLORS,
    boundary_layout,
    last_step,
    line,
    series,
    stage_boundaries,
    step_axes,
)
from tunelab.report.page import Page, note
from tunelab.report.rundata import RunData

# train-record key -> (chart title, y-axis title, log scale)
TRAIN_CURVES = {
    "lr": ("learning rate", "lr", False),
    "grad_norm": ("gradient norm (before clipping)", "norm", False),
    "tokens_per_s": ("throughput", "tokens/s", False),
    "memory_mb": ("peak memory", "MB", False),
    "loss_scale": ("fp16 loss scale", "scale", True),
}
NOT_METRICS = {"type", "step", "global_step", "epoch", "is_best", "stage"}


def eval_keys(run: RunData) -> list[str]:
    """The numeric validation metrics logged, in first-seen order (eval_loss first)."""
    keys: list[str] = []
    for row in run.eval_rows():
        for key, value in row.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and key not in NOT_METRICS and key not in keys:
                keys.append(key)
    return sorted(keys, key=lambda k: k != "eval_loss")


def best_markers(points: list[tuple[int, float]]) -> dict:
    """Stars on the validations that set a new best (``is_best``)."""
    return {"type": "scatter", "mode": "markers", "name": "new best",
            "x": [x for x, _ in points], "y": [y for _, y in points],
            "marker": {"symbol": "star", "size": 12, "color": "#bf8700"}}  # fmt: skip


def render(run: RunData, page: Page) -> str | None:
    if not run.metrics:
        return note("no metrics yet: the curves appear after the first logged step")
    train, evals = run.train_rows(), run.eval_rows()
    stages = boundary_layout(stage_boundaries(run))
    end = last_step([run])
    charts = []
    steps, loss = series(train, "loss")
    loss_traces = [line("train loss", steps, loss, COLORS[0])] if steps else []
    eval_steps, eval_loss = series(evals, "eval_loss")
    if eval_steps:
        loss_traces.append(line("validation loss", eval_steps, eval_loss, COLORS[1]))
    if loss_traces:
        layout = deep_merge(step_axes("loss", end), stages)
        charts.append(page.chart({"data": loss_traces, "layout": layout}, "loss"))
    for index, key in enumerate(k for k in eval_keys(run) if k != "eval_loss"):
        xs, ys = series(evals, key)
        trace = line(key, xs, ys, COLORS[(index + 2) % len(COLORS)])
        best = {r["global_step"] for r in evals if r.get("is_best")}
        starred = [(x, y) for x, y in zip(xs, ys, strict=True) if x in best]
        data = [trace]
        if starred:
            data.append(best_markers(starred))
        layout = deep_merge(step_axes(key, end), stages)
        charts.append(page.chart({"data": data, "layout": layout}, f"validation: {key}"))
    for index, (key, (title, y_title, log)) in enumerate(TRAIN_CURVES.items()):
        xs, ys = series(train, key)
        if xs:
            trace = line(key, xs, ys, COLORS[(index + 4) % len(COLORS)])
            layout = deep_merge(step_axes(y_title, end, log), stages)
            charts.append(page.chart({"data": [trace], "layout": layout}, title))
    return f'<div class="grid">{"".join(charts)}</div>'
