"""Classification views: per-class table, confusion-matrix heatmap, reliability diagram."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunelab.report.page import Page
from tunelab.report.rundata import Predictions

BINS = 10


@dataclass
class Reliability:
    """Per confidence bin: examples, mean confidence, accuracy; and the expected calibration
    error (the count-weighted mean gap between accuracy and confidence)."""

    lower: list[float]
    count: list[int]
    confidence: list[float | None]
    accuracy: list[float | None]
    ece: float


def reliability(predictions: Predictions, bins: int = BINS) -> Reliability | None:
    """Equal-width bins of the top-class probability; None without probabilities."""
    n = len(predictions.confidence)
    if n == 0:
        return None
    count, conf_sum, correct = [0] * bins, [0.0] * bins, [0] * bins
    for conf, label, pred in zip(
        predictions.confidence, predictions.labels, predictions.predicted, strict=True
    ):
        b = min(int(conf * bins), bins - 1)
        count[b] += 1
        conf_sum[b] += conf
        correct[b] += label == pred
    confidence = [conf_sum[b] / count[b] if count[b] else None for b in range(bins)]
    accuracy = [correct[b] / count[b] if count[b] else None for b in range(bins)]
    ece = sum(
        count[b] / n * abs(accuracy[b] - confidence[b])  # type: ignore[operator]
        for b in range(bins)
        if count[b]
    )
    return Reliability([b / bins for b in range(bins)], count, confidence, accuracy, ece)


def reliability_chart(page: Page, rel: Reliability) -> str:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    width = 1 / len(rel.lower)
    centers = [lo + width / 2 for lo in rel.lower]
    bars = {
        "type": "bar",
        "name": "accuracy in bin",
        "x": centers,
        "y": rel.accuracy,
        "width": width * 0.95,
        "marker": {"color": "#1f77b4"},
        "text": [f"n={c}" if c else "" for c in rel.count],
        "textposition": "auto",
        "customdata": rel.count,
        "hovertemplate": "confidence %{x:.2f}<br>accuracy %{y:.3f}<br>"
        "%{customdata} examples<extra></extra>",
    }
    gap = {
        "type": "scatter",
        "mode": "markers",
        "name": "mean confidence in bin",
        "x": centers,
        "y": rel.confidence,
        "marker": {"color": "#d62728", "size": 8, "symbol": "diamond"},
    }
    diagonal = {
        "type": "scatter",
        "mode": "lines",
        "name": "perfect calibration",
        "x": [0, 1],
        "y": [0, 1],
        "line": {"color": "#6e7781", "dash": "dash"},
    }
    layout = {"xaxis": {"title": {"text": "confidence (top-class probability)"},
                        "range": [0, 1]},
              "yaxis": {"title": {"text": "accuracy"}, "range": [0, 1.02]}}  # fmt: skip
    title = f"reliability diagram (ECE {rel.ece:.3f})"
    return page.chart({"data": [bars, gap, diagonal], "layout": layout}, title)


def confusion_chart(page: Page, matrix: list[list[int]], labels: list[str]) -> str:
    """The confusion matrix as an annotated heatmap (rows: true label)."""
    annotations = [
        {"x": labels[c], "y": labels[r], "text": str(v), "showarrow": False,
         "font": {"color": "#fff" if v > max(map(max, matrix)) / 2 else "#1f2328"}}
        for r, row in enumerate(matrix) for c, v in enumerate(row)
    ]  # fmt: skip
    heat = {
        "type": "heatmap",
        "z": matrix,
        "x": labels,
        "y": labels,
        "colorscale": [[0, "#f7fbff"], [1, "#08306b"]],
        "hovertemplate": "true %{y}<br>predicted %{x}<br>%{z} examples<extra></extra>",
    }
    layout = {"xaxis": {"title": {"text": "predicted"}, "type": "category"},
              "yaxis": {"title": {"text": "true"}, "autorange": "reversed", "type": "category"},
              "annotations": annotations, "height": max(340, 60 + 38 * len(labels)),
              "margin": {"l": 110, "b": 90}}  # fmt: skip
    return page.chart({"data": [heat], "layout": layout}, "confusion matrix")


def per_class_table(page: Page, per_class: dict[str, dict[str, Any]]) -> str:
    """Precision, recall, F1 and support of every class."""
    rows = [
        (name, v.get("precision"), v.get("recall"), v.get("f1"), v.get("support"))
        for name, v in per_class.items()
    ]
    header = ["class", "precision", "recall", "F1", "support"]
    return page.table(header, rows, name="per_class")
