"""Extractive-QA metrics: exact match and token F1 with SQuAD-style normalisation.

Normalisation: lower-case, drop punctuation, drop the English articles a/an/the, collapse
whitespace. Tokens are words, and single characters for CJK text.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tunelab.evaluate.language import CJK_CHAR, TOKEN

if TYPE_CHECKING:
    from tunelab.evaluate.registry import ScoringContext

_PUNCT = set(string.punctuation) | set("，。！？；：、“”‘’（）《》【】—…·")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation (lower-case, no punctuation, no articles, single spaces)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """Tokens of the normalised answer; each CJK character is a token."""
    norm = normalize_answer(text)
    return TOKEN.findall(norm) if CJK_CHAR.search(norm) else norm.split()


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over the shared tokens (multiset)."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


class QAAccumulator:
    """Running sums of exact match and token F1."""

    def __init__(self) -> None:
        self.em = self.f1 = 0.0
        self.count = 0

    def update(self, predictions: list[str], references: list[str]) -> list[dict[str, float]]:
        """Add a batch; returns each pair's ``exact_match`` and ``qa_f1``."""
        rows = [
            {"exact_match": exact_match(p, r), "qa_f1": token_f1(p, r)}
            for p, r in zip(predictions, references, strict=True)
        ]
        self.em += sum(r["exact_match"] for r in rows)
        self.f1 += sum(r["qa_f1"] for r in rows)
        self.count += len(rows)
        return rows

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {"exact_match": self.em / n, "qa_f1": self.f1 / n}


class QAScorer:
    """The registry's scorer of exact_match and qa_f1 against the references."""

    def __init__(self, ctx: ScoringContext) -> None:
        self.acc = QAAccumulator()

    def update(
        self, outputs: Sequence[str], examples: Sequence[dict[str, Any]]
    ) -> list[dict[str, float]]:
        return self.acc.update(list(outputs), [ex["reference"] for ex in examples])

    def compute(self) -> dict[str, float]:
        return self.acc.compute()
