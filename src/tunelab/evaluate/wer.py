"""Word and character error rates of transcripts (jiwer), for the ``speech`` format.

Both sides are normalised first: lower-case, every character that is not a letter, digit or
word-inner apostrophe (punctuation, symbols) replaced by a space, whitespace collapsed, so "Go forward, ten metres." matches "go forward
ten metres". Numbers are not spelled out ("10" and "ten" differ). The corpus rates are the
summed edits over the summed reference words (characters), not a mean of per-row rates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunelab.evaluate.registry import ScoringContext

_PUNCT = re.compile(r"[^\w\s']|(?<!\w)'|'(?!\w)|_")


def normalize_transcript(text: str) -> str:
    """Lower-case, punctuation to spaces (word-inner apostrophes kept), single spaces."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def edit_counts(reference: str, hypothesis: str) -> tuple[int, int, int, int]:
    """``(word edits, reference words, character edits, reference characters)`` of one pair
    after normalisation (an empty hypothesis: every reference word deleted)."""
    import jiwer

    ref, hyp = normalize_transcript(reference), normalize_transcript(hypothesis)
    if not ref:
        return len(hyp.split()), 0, len(hyp), 0
    words = jiwer.process_words(ref, hyp)
    chars = jiwer.process_characters(ref, hyp)
    word_edits = words.substitutions + words.deletions + words.insertions
    char_edits = chars.substitutions + chars.deletions + chars.insertions
    return word_edits, len(ref.split()), char_edits, len(ref)


class WerScorer:
    """Accumulates word/character edits over the generated transcripts (generate stage)."""

    def __init__(self, ctx: ScoringContext | None = None) -> None:
        self.word_edits = self.words = self.char_edits = self.chars = 0

    def update(
        self, outputs: Sequence[str], examples: Sequence[dict[str, Any]]
    ) -> list[dict[str, float | None]]:
        rows = []
        for text, example in zip(outputs, examples, strict=True):
            w_edits, words, c_edits, chars = edit_counts(example["reference"], text)
            self.word_edits, self.words = self.word_edits + w_edits, self.words + words
            self.char_edits, self.chars = self.char_edits + c_edits, self.chars + chars
            rows.append({"wer": w_edits / words if words else None})
        return rows

    def compute(self) -> dict[str, float]:
        nan = float("nan")
        return {
            "wer": self.word_edits / self.words if self.words else nan,
            "cer": self.char_edits / self.chars if self.chars else nan,
        }
