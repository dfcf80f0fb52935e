"""Attention maps of a few validation examples (``RUN_DIR/attention.json``, written at the
end of training when ``output.attention_examples`` is above 0), with layer/head selection."""

from __future__ import annotations

import json

from tunelab.attention.page import ATTENTION_FILE, SCRIPT, STYLE, fragment
from tunelab.report.page import Page, note
from tunelab.report.rundata import RunData


def render(run: RunData, page: Page) -> str | None:
    path = run.path / ATTENTION_FILE
    if not path.is_file():
        return None
    try:
        examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return note(f"{path}: unreadable ({type(exc).__name__}); rerun the training's end or "
                    "`tunelab attention`")  # fmt: skip
    parts = [
        '<p class="muted">Attention weights read from the models (eager attention); rows '
        "attend to columns; «marked» tokens are special or virtual, <i>italic</i> ones "
        "generated. Rollout: Abnar &amp; Zuidema (2020).</p>",
        f"<style>{STYLE}</style><script>{SCRIPT}</script>",
    ]
    for block in examples:
        page.count += 1  # element ids unique across every run of the page
        parts.append(fragment({**block, "id": f"attn-{page.count}"}))
    return "".join(parts)
