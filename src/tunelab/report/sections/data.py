"""The data report (``data_report.json``): rows per split, label distribution, token-length
histogram, truncation, and what cleaning removed with an example per step."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

from tunelab.report.charts import COLORS
from tunelab.report.page import Page, note
from tunelab.report.rundata import RunData
from tunelab.report.samples import cut


def splits_table(page: Page, report: dict[str, Any]) -> str:
    """Rows, truncated rows and token-length percentiles per split."""
    lengths, truncated = report.get("token_lengths") or {}, report.get("truncated") or {}
    rows = []
    for split, count in (report.get("rows") or {}).items():
        stats = lengths.get(split) or {}
        rows.append((split, count, truncated.get(split), *(stats.get(k) for k in
                     ("mean", "p50", "p90", "p99", "max"))))  # fmt: skip
    header = ["split", "rows", "truncated", "tokens mean", "p50", "p90", "p99", "max"]
    return page.table(header, rows, name="splits")


def labels_chart(page: Page, report: dict[str, Any]) -> str | None:
    """Rows per label, one bar group per split."""
    names, counts = report.get("label_names"), report.get("labels")
    if not names or not counts:
        return None
    data = [
        {"type": "bar", "name": split, "x": names, "y": [per.get(n, 0) for n in names],
         "marker": {"color": COLORS[i % len(COLORS)]}}
        for i, (split, per) in enumerate(counts.items())
    ]  # fmt: skip
    layout = {"barmode": "group", "yaxis": {"title": {"text": "rows"}},
              "xaxis": {"type": "category"}}  # fmt: skip
    return page.chart({"data": data, "layout": layout}, "label distribution")


def lengths_chart(page: Page, report: dict[str, Any]) -> str | None:
    """The token-length histogram of every split (before truncation), max_length marked."""
    histograms = report.get("token_length_histogram")
    if not histograms:
        return None
    data = []
    for i, (split, h) in enumerate(histograms.items()):
        edges, counts = h["edges"], h["counts"]
        centers = [(a + b) / 2 for a, b in pairwise(edges)]
        widths = [b - a for a, b in pairwise(edges)]
        data.append(
            {
                "type": "bar",
                "name": split,
                "x": centers,
                "y": counts,
                "width": widths,
                "opacity": 0.6,
                "marker": {"color": COLORS[i % len(COLORS)]},
            }
        )
    layout: dict[str, Any] = {"barmode": "overlay", "xaxis": {"title": {"text": "tokens"}},
                              "yaxis": {"title": {"text": "rows"}}}  # fmt: skip
    limit = report.get("max_length")
    if limit:
        layout["shapes"] = [{"type": "line", "xref": "x", "yref": "paper", "x0": limit,
                             "x1": limit, "y0": 0, "y1": 1, "line": {"color": "#cf222e",
                             "dash": "dash"}}]  # fmt: skip
        layout["annotations"] = [{"x": limit, "y": 1, "xref": "x", "yref": "paper",
                                  "text": f"max_length {limit}", "showarrow": False,
                                  "xanchor": "left", "yanchor": "top"}]  # fmt: skip
    return page.chart({"data": data, "layout": layout}, "token lengths (before truncation)")


def json_text(value: Any) -> str:
    """A field of an example row as text (strings as they are, the rest as JSON)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def cleaning_table(page: Page, report: dict[str, Any]) -> str | None:
    """Rows removed by each cleaning step, with an example row."""
    cleaning = report.get("cleaning") or {}
    removed = cleaning.get("removed") or {}
    if not removed:
        return None
    rows = []
    for step, info in removed.items():
        example = (info or {}).get("example")
        shown = None
        if example:
            shown = "\n".join(filter(None, [example.get("reason"), example.get("where")]))
            row = example.get("row")
            fields = row.items() if isinstance(row, dict) else [("row", row)]
            shown += "".join(f"\n{k}: {json_text(v)}" for k, v in fields if v is not None)
        rows.append((step, (info or {}).get("removed"), cut(shown)))
    head = f'<p class="muted">{cleaning.get("normalized_rows", 0):,} rows normalised</p>'
    table = page.table(["step", "rows removed", "example"], rows, name="cleaning",
                       cells=frozenset({2}))  # fmt: skip
    return head + table


def render(run: RunData, page: Page) -> str | None:
    report = run.data_report
    if report is None:
        return None
    parts = [splits_table(page, report)]
    parts += [note(w) for w in report.get("warnings") or []]
    charts = [c for c in (labels_chart(page, report), lengths_chart(page, report)) if c]
    if charts:
        parts.append(f'<div class="grid">{"".join(charts)}</div>')
    cleaning = cleaning_table(page, report)
    if cleaning:
        parts.append("<h3>cleaning</h3>" + cleaning)
    return "".join(parts)
