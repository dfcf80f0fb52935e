"""plotly.js figure dicts the sections share: lines over steps, stage boundaries, bars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunelab.report.rundata import RunData

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#17becf", "#bcbd22", "#7f7f7f")  # fmt: skip


MAX_POINTS = 2000  # a longer series is thinned to every k-th point (the last one kept)


def series(
    rows: Sequence[dict[str, Any]], key: str, max_points: int = MAX_POINTS
) -> tuple[list[int], list[float]]:
    """(steps, values) of the rows that hold a number under ``key``, at most ``max_points``
    of them (every k-th row and the last), so a long run's page stays light."""
    steps, values = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            steps.append(row["step"])
            values.append(float(value))
    stride = -(-len(steps) // max_points)  # ceil
    if stride > 1:
        keep = [*range(0, len(steps) - 1, stride), len(steps) - 1]
        steps, values = [steps[i] for i in keep], [values[i] for i in keep]
    return steps, values


def line(name: str, steps: list[int], values: list[float], color: str, **extra: Any) -> dict:
    """A scatter trace of lines (markers too when there are few points)."""
    mode = "lines+markers" if len(steps) <= 30 else "lines"
    return {"type": "scatter", "mode": mode, "name": name, "x": steps, "y": values,
            "line": {"color": color, "width": 2}, "marker": {"size": 6}, **extra}  # fmt: skip


def stage_boundaries(run: RunData) -> list[tuple[int, str]]:
    """(first step, stage name) where consecutive metric rows change their ``stage`` field
    (the first stage included when any row has one)."""
    out: list[tuple[int, str]] = []
    previous = None
    for row in sorted(run.metrics, key=lambda r: r["step"]):
        stage = row.get("stage")
        if stage is not None and stage != previous:
            out.append((row["step"], str(stage)))
            previous = stage
    return out


def boundary_layout(boundaries: list[tuple[int, str]]) -> dict[str, Any]:
    """Dashed vertical lines with the stage name at every stage change (not before the first)."""
    shapes, notes = [], []
    for index, (step, stage) in enumerate(boundaries):
        if index > 0:
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": step, "x1": step,
                           "y0": 0, "y1": 1, "line": {"color": "#6e7781", "dash": "dash",
                                                      "width": 1.5}})  # fmt: skip
        notes.append({"x": step, "y": 1, "xref": "x", "yref": "paper", "text": f"stage: {stage}",
                      "showarrow": False, "xanchor": "left", "yanchor": "top",
                      "bgcolor": "rgba(255,255,255,0.8)",
                      "font": {"size": 11, "color": "#57606a"}})  # fmt: skip
    return {"shapes": shapes, "annotations": notes} if boundaries else {}


FEW_STEPS = 12  # up to this many steps, every step gets a tick (no fractional steps)


def step_axes(y_title: str, last_step: int = 0, log: bool = False) -> dict[str, Any]:
    """Layout of a chart over optimizer steps (``last_step``: the run's last logged step)."""
    yaxis: dict[str, Any] = {"title": {"text": y_title}}
    if log:
        yaxis["type"] = "log"
    xaxis: dict[str, Any] = {"title": {"text": "step"}}
    if 0 < last_step <= FEW_STEPS:
        xaxis["dtick"] = 1
    return {"xaxis": xaxis, "yaxis": yaxis}


def last_step(runs: Sequence[RunData]) -> int:
    """The largest step any of ``runs`` logged (0 without metrics)."""
    return max((row["step"] for run in runs for row in run.metrics), default=0)
