"""The attention page: per-layer, per-head heatmaps (fine-tuned, base and their difference),
the rollout, layer/head selection; one self-contained HTML file with plotly.js inlined."""

from __future__ import annotations

import base64
import html
import json
from typing import Any

import numpy as np

ATTENTION_FILE = "attention.json"  # a run's maps of validation examples, for the report
SCALE = 65535  # weights travel as little-endian uint16 in base64: 1.5e-5 resolution

SCRIPT = r"""
function tunelabAttention(p) {
  function unpack(packed) {  // -> nested arrays of the given shape, in [0, 1]
    const bin = atob(packed.b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const flat = new Uint16Array(bytes.buffer);
    const build = (dims, at) => dims.length === 1
      ? Array.from(flat.subarray(at, at + dims[0]), (v) => v / p.scale)
      : Array.from({length: dims[0]}, (_, i) =>
          build(dims.slice(1), at + i * dims.slice(1).reduce((a, b) => a * b, 1)));
    return build(packed.shape, 0);
  }
  p.models.forEach((m) => { m.maps = unpack(m.maps); m.rollout = unpack(m.rollout); });
  const $ = (s) => document.getElementById(p.id + "-" + s);
  const esc = (t) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const tick = (k) => k.s ? '<span style="color:#c0392b">«' + esc(k.t) + '»</span>'
    : k.g ? '<i style="color:#1f5fa8">' + esc(k.t) + '</i>' : esc(k.t);
  const range = (a, b) => Array.from({length: b - a}, (_, i) => a + i);
  function axes(m, view) {
    // rows: query positions, cols: key positions (in the model's own token list)
    const off = m.vk - m.vq, n = m.tokens.length - m.vk;
    if (view === "generated") {
      return [range(m.vk + p.prompt_tokens, m.vk + n).map((k) => k - off),
              range(m.vk, m.vk + p.prompt_tokens)];
    }
    return [range(0, m.maps[0][0].length), range(0, m.tokens.length)];
  }
  function pick(m, l, h) {
    const layer = m.maps[l];
    if (h >= 0) return layer[h];
    return layer[0].map((row, i) => row.map((_, j) =>
      layer.reduce((s, head) => s + head[i][j], 0) / layer.length));
  }
  function inputBlock(m, z) {  // the input tokens over the input tokens
    return z.slice(m.vq).map((row) => row.slice(m.vk));
  }
  function heat(div, z, rows, cols, qtok, ktok, title, diverging) {
    const zz = rows.map((i) => cols.map((j) => z[i][j]));
    const text = rows.map((i) => cols.map((j) => esc(qtok[i].t) + " → " + esc(ktok[j].t)));
    const trace = {type: "heatmap", z: zz, text: text, x: range(0, cols.length),
      y: range(0, rows.length), hovertemplate: "%{text}<br>weight %{z:.4f}<extra></extra>",
      colorscale: diverging ? "RdBu" : "Viridis"};
    if (diverging) { trace.zmid = 0; }
    const side = (k) => Math.max(320, Math.min(900, 18 * k + 180));
    const layout = {title: {text: title, font: {size: 14}, x: 0.01, xanchor: "left"},
      width: side(cols.length), height: side(rows.length),
      margin: {l: 110, b: 110, t: 70, r: 20},
      xaxis: {tickvals: range(0, cols.length), ticktext: cols.map((j) => tick(ktok[j])),
              tickangle: -60, title: {text: "attended token (key)"}},
      yaxis: {tickvals: range(0, rows.length), ticktext: rows.map((i) => tick(qtok[i])),
              autorange: "reversed", title: {text: "attending token (query)"}}};
    Plotly.react(div, [trace], layout, {responsive: false, displaylogo: false});
  }
  function toks(m, from) {  // generated tokens (after the prompt) are shown in blue italics
    return m.tokens.slice(from).map((t, i) => ({t: t, s: m.special[from + i],
      g: p.generated > 0 && from + i >= m.vk + p.prompt_tokens}));
  }
  function draw() {
    const l = +$("layer").value, h = +$("head").value, view = $("view").value;
    const hname = h >= 0 ? "head " + p.heads[h] : "mean of heads";
    const zs = [];
    p.models.forEach((m, k) => {
      const z = pick(m, l, h);
      zs.push(z);
      const [rows, cols] = axes(m, view);
      heat(p.id + "-map-" + k, z, rows, cols, toks(m, m.vk - m.vq), toks(m, 0),
           m.label + ": layer " + p.layers[l] + ", " + hname, false);
      const r = m.rollout_offset, ro = {maps: [[m.rollout]], tokens: m.tokens.slice(r),
        special: m.special.slice(r), vk: m.vk - r, vq: m.vk - r};
      const [rr, rc] = axes(ro, view);
      heat(p.id + "-roll-" + k, m.rollout, rr, rc, toks(ro, 0), toks(ro, 0),
           m.label + ": rollout over all layers", false);
    });
    if (p.models.length === 2) {
      const [a, b] = p.models, za = inputBlock(a, zs[0]), zb = inputBlock(b, zs[1]);
      const d = za.map((row, i) => row.map((v, j) => v - zb[i][j]));
      const plain = {maps: [[d]], tokens: b.tokens, special: b.special, vk: 0, vq: 0};
      const [rows, cols] = axes(plain, view);
      heat(p.id + "-diff", d, rows, cols, toks(plain, 0), toks(plain, 0),
           "difference (fine-tuned − base): layer " + p.layers[l] + ", " + hname, true);
    }
  }
  ["layer", "head", "view"].forEach((s) => $(s).addEventListener("change", draw));
  draw();
}
"""

PAGE_STYLE = "body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }"

STYLE = """
.tl-attn { margin: 1em 0 2em; }
.tl-attn-row { display: flex; flex-wrap: wrap; gap: 1em; }
.tl-attn-controls { margin: .8em 0; display: flex; gap: 1.5em; }
.tl-attn-text { background: #f5f5f5; padding: .5em; white-space: pre-wrap; }
"""


def payload(result: Any, element_id: str, layers: list[int], heads: list[int]) -> dict[str, Any]:
    """The JSON the page draws from: the chosen layers' and heads' maps of every model."""
    models = []
    for maps in result.maps:
        chosen = maps.weights[layers][:, heads]
        roll, offset = maps.rollout()
        models.append(
            {
                "label": maps.label,
                "tokens": maps.tokens,
                "special": maps.special,
                "vk": maps.virtual_keys,
                "vq": maps.virtual_queries,
                "maps": quantised(chosen),
                "rollout": quantised(roll),
                "rollout_offset": offset,
            }
        )
    return {
        "id": element_id,
        "scale": SCALE,
        "text": result.text,
        "prompt_tokens": result.prompt_tokens,
        "generated": result.generated,
        "layers": layers,
        "heads": heads,
        "models": models,
    }


def quantised(weights: np.ndarray) -> dict[str, Any]:
    """Weights in [0, 1] packed as base64 little-endian uint16 in units of 1/:data:`SCALE`,
    with their shape (about 2.7 bytes a weight on the page)."""
    values = np.clip(np.rint(np.asarray(weights, dtype=np.float64) * SCALE), 0, SCALE)
    packed = base64.b64encode(values.astype("<u2").tobytes()).decode("ascii")
    return {"b64": packed, "shape": list(values.shape)}


def unpacked(packed: dict[str, Any]) -> np.ndarray:
    """The weights of :func:`quantised` back as floats."""
    flat = np.frombuffer(base64.b64decode(packed["b64"]), dtype="<u2")
    return flat.reshape(packed["shape"]).astype(np.float64) / SCALE


def fragment(data: dict[str, Any]) -> str:
    """One input's maps as an HTML block (needs plotly.js and :data:`SCRIPT` on the page)."""
    pid = data["id"]
    options = "".join(f'<option value="{i}">{n}</option>' for i, n in enumerate(data["layers"]))
    heads = '<option value="-1">mean of heads</option>' + "".join(
        f'<option value="{i}">{n}</option>' for i, n in enumerate(data["heads"])
    )
    views = '<option value="all">all tokens</option>'
    if data["generated"]:
        views += '<option value="generated">generated tokens over the prompt</option>'
    maps = "".join(f'<div id="{pid}-map-{k}"></div>' for k in range(len(data["models"])))
    rolls = "".join(f'<div id="{pid}-roll-{k}"></div>' for k in range(len(data["models"])))
    diff = f'<div class="tl-attn-row"><div id="{pid}-diff"></div></div>' if len(
        data["models"]
    ) == 2 else ""  # fmt: skip
    return (
        f'<div class="tl-attn" id="{pid}"><div class="tl-attn-text">{html.escape(data["text"])}'
        f'</div><div class="tl-attn-controls"><label>layer <select id="{pid}-layer">{options}'
        f'</select></label><label>head <select id="{pid}-head">{heads}</select></label>'
        f'<label>view <select id="{pid}-view">{views}</select></label></div>'
        f'<div class="tl-attn-row">{maps}</div>{diff}<div class="tl-attn-row">{rolls}</div>'
        f"<script>tunelabAttention({_json(data)});</script></div>"
    )


def page(blocks: list[dict[str, Any]], title: str, intro: str = "") -> str:
    """A whole self-contained page (plotly.js inlined, works offline from disk)."""
    from plotly.offline import get_plotlyjs

    body = "".join(fragment(block) for block in blocks)
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{PAGE_STYLE}{STYLE}</style><script>{get_plotlyjs()}</script><script>{SCRIPT}</script>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{intro}</p>{body}</body></html>"
    )


def _json(data: dict[str, Any]) -> str:
    """``data`` as JSON that cannot end the ``<script>`` element it sits in."""
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
