"""Generation samples: prompt, reference, prediction and the per-example scores."""

from __future__ import annotations

from typing import Any

from tunelab.report.page import Page

TEXT_KEYS = ("prompt", "reference", "prediction")
MAX_CHARS = 2000  # longer texts are cut (the page stays light)


def score_keys(samples: list[dict[str, Any]]) -> list[str]:
    """The per-example score keys (numbers other than the index), first-seen order."""
    keys: list[str] = []
    for record in samples:
        for key, value in record.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and key != "index" and key not in keys:
                keys.append(key)
    return keys


def cut(text: Any) -> Any:
    """``text`` cut at ``MAX_CHARS`` characters (with a marker)."""
    if isinstance(text, str) and len(text) > MAX_CHARS:
        return text[:MAX_CHARS] + f" […{len(text) - MAX_CHARS} more characters]"
    return text


def samples_table(page: Page, samples: list[dict[str, Any]], total: int) -> str | None:
    """The first samples with their scores; None when the records have no prediction text."""
    shown = [s for s in samples if "prediction" in s]
    if not shown:
        return None
    scores = score_keys(shown)
    rows = [
        (s.get("index"), *(cut(s.get(k)) for k in TEXT_KEYS), *(s.get(k) for k in scores))
        for s in shown
    ]
    header = ["#", *TEXT_KEYS, *scores]
    head = f'<p class="muted">{len(shown)} of {total} evaluated examples</p>'
    return head + page.table(header, rows, text_columns=4, name="samples",
                             cells=frozenset({1, 2, 3}))  # fmt: skip
