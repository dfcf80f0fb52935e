"""The HTML page: charts (plotly.js figures, the library inlined), tables and the layout.

Sections build their content with :class:`Page` (``chart``, ``table``) and return HTML; the
page assembles one self-contained file that opens offline from disk. Figures are plain
plotly.js figure dicts (``{"data": [...], "layout": {...}}``), so building a report imports
no plotting code in Python and stays cheap enough to rewrite at every validation.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from functools import cache
from typing import Any

from tunelab.errors import TunelabError, first_line
from tunelab.mappings import deep_merge

RELOAD_S = 20  # a live report reloads itself this often

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
header{background:#24292f;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#d0d7de;font-size:14px}
main{padding:8px 28px 40px;max-width:1500px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 20px;
margin:16px 0}
h2{font-size:19px;margin:4px 0 10px}h3{font-size:16px;margin:14px 0 6px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:10px}
.chart{min-height:340px;border:1px solid #eaeef2;border-radius:6px}
table{border-collapse:collapse;font-size:14px;margin:6px 0 10px}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:right;vertical-align:top}
th{background:#f6f8fa}td.text,th.text{text-align:left}
td.best{background:#dafbe1;font-weight:600}
td.cell{max-width:420px;text-align:left;white-space:pre-wrap;font-size:13px}
td.cell div{max-height:140px;overflow:auto}
.note{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 12px;
margin:6px 0;font-size:14px}
.live{background:#ddf4ff;border-color:#54aeff}
details>summary{cursor:pointer;font-size:18px;font-weight:600;padding:6px 0}
.muted{color:#656d76;font-size:13px}
"""

BOOT = """
function drawCharts(root){
  root.querySelectorAll('div.chart:not([data-drawn])').forEach(function(div){
    if(div.offsetParent===null) return;
    var fig=JSON.parse(document.getElementById(div.id+'-fig').textContent);
    Plotly.newPlot(div,fig.data,fig.layout,{responsive:true,displaylogo:false});
    div.setAttribute('data-drawn','1');
  });
}
document.addEventListener('DOMContentLoaded',function(){
  drawCharts(document);
  document.querySelectorAll('details').forEach(function(d){
    d.addEventListener('toggle',function(){ if(d.open) drawCharts(d); });
  });
});
"""

RELOAD = """
(function(){
  var key='tunelab-scroll:'+location.pathname;
  window.addEventListener('load',function(){
    var y=sessionStorage.getItem(key); if(y!==null) window.scrollTo(0,+y);
  });
  setTimeout(function(){ sessionStorage.setItem(key,window.scrollY); location.reload(); },
             %d);
})();
"""


@cache
def plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package (inlined into every report)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as exc:
        raise TunelabError(
            f"the report needs plotly ({first_line(exc)}); pip install plotly"
        ) from None
    return get_plotlyjs()


def esc(value: Any) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A table cell's text: numbers rounded for reading, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        size = abs(value)
        if size >= 1e6 or (0 < size < 1e-3):
            return f"{value:.3e}"
        return f"{value:,.1f}" if size >= 100 else f"{value:.4g}"
    return str(value)


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def note(text: str, kind: str = "") -> str:
    """A highlighted note line."""
    return f'<div class="note {kind}">{esc(text)}</div>'


class Page:
    """Collects the charts of one report and hands out their element ids."""

    def __init__(self) -> None:
        self.count = 0

    def chart(self, figure: dict[str, Any], title: str = "") -> str:
        """A chart div with its figure as a JSON script beside it (drawn on load)."""
        self.count += 1
        chart_id = f"chart-{self.count}"
        layout = {
            "title": {"text": title, "font": {"size": 15}, "x": 0.01, "xanchor": "left"},
            "margin": {"l": 64, "r": 20, "t": 44, "b": 84},
            "height": 360,
            "template": None,
            "paper_bgcolor": "#fff",
            "plot_bgcolor": "#fff",
            "xaxis": {"gridcolor": "#eaeef2", "zeroline": False},
            "yaxis": {"gridcolor": "#eaeef2", "zeroline": False, "exponentformat": "e"},
            "legend": {"orientation": "h", "y": -0.3, "yanchor": "top"},
            "hovermode": "closest",
        }
        layout = deep_merge(layout, figure.get("layout", {}))
        figure = finite({"data": figure["data"], "layout": layout})
        payload = json.dumps(figure, allow_nan=False, default=str).replace("</", "<\\/")
        return (
            f'<div class="chart" id="{chart_id}" data-title="{esc(title)}"></div>'
            f'<script type="application/json" id="{chart_id}-fig">{payload}</script>'
        )

    @staticmethod
    def table(
        header: Sequence[str],
        rows: Sequence[Sequence[Any]],
        best: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset(),
        text_columns: int = 1,
        name: str = "",
        cells: frozenset[int] = frozenset(),
    ) -> str:
        """An HTML table; ``best`` marks (row, column) cells, the first ``text_columns``
        columns are left-aligned, ``cells`` columns hold long text (scrolling boxes)."""
        head = "".join(
            f'<th class="{"text" if i < text_columns or i in cells else ""}">{esc(h)}</th>'
            for i, h in enumerate(header)
        )
        body = []
        for r, row in enumerate(rows):
            tds = []
            for c, value in enumerate(row):
                css = "best" if (r, c) in best else "text" if c < text_columns else ""
                if c in cells:
                    tds.append(f'<td class="cell"><div>{esc(fmt(value))}</div></td>')
                else:
                    tds.append(f'<td class="{css}">{esc(fmt(value))}</td>')
            body.append("<tr>" + "".join(tds) + "</tr>")
        attr = f' data-table="{esc(name)}"' if name else ""
        return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def document(title: str, subtitle: str, body: str, live: bool) -> str:
    """The whole HTML file."""
    reload = f"<script>{RELOAD % (RELOAD_S * 1000)}</script>" if live else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style>"
        f"<script>{plotly_js()}</script><script>{BOOT}</script>{reload}</head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"<main>{body}</main></body></html>\n"
    )
