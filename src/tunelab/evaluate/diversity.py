"""Diversity of generated outputs: distinct-n and self-BLEU.

- distinct-n: unique n-grams / all n-grams over all outputs (corpus level), 0-1.
- self-BLEU: mean sacrebleu sentence BLEU (0-100) of each output against all the others as
  references; lower is more diverse. It is quadratic in the number of outputs, so it runs
  on a seeded reservoir sample of at most ``self_bleu_sample`` outputs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.evaluate.language import Language, tokenize

if TYPE_CHECKING:
    from tunelab.evaluate.registry import ScoringContext


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def self_bleu(outputs: Sequence[str], language: Language = "en") -> float | None:
    """Mean sentence BLEU of each output against the rest; None for fewer than 2 outputs."""
    from sacrebleu.metrics import BLEU

    if len(outputs) < 2:
        return None
    metric = BLEU(tokenize="zh" if language == "zh" else "13a", effective_order=True)
    scores = [
        metric.sentence_score(out, [o for j, o in enumerate(outputs) if j != i]).score
        for i, out in enumerate(outputs)
    ]
    return float(np.mean(scores))


class DiversityAccumulator:
    """Unique n-grams (n = 1, 2) and a bounded reservoir sample of outputs for self-BLEU."""

    def __init__(self, language: Language, self_bleu_sample: int = 100, seed: int = 0) -> None:
        self.language = language
        self.sample_size = self_bleu_sample
        self._rng = random.Random(seed)
        self._unique: dict[int, set[int]] = {1: set(), 2: set()}
        self._total = {1: 0, 2: 0}
        self._sample: list[str] = []
        self._seen = 0

    def update(self, outputs: Sequence[str]) -> None:
        for text in outputs:
            tokens = tokenize(text, self.language)
            for n in (1, 2):
                grams = ngrams(tokens, n)
                self._unique[n].update(hash(g) for g in grams)
                self._total[n] += len(grams)
            self._seen += 1
            if len(self._sample) < self.sample_size:
                self._sample.append(text)
            else:
                j = self._rng.randrange(self._seen)
                if j < self.sample_size:
                    self._sample[j] = text

    def compute(self) -> dict[str, float | None]:
        """distinct_1, distinct_2 (0-1) and self_bleu (0-100)."""
        out: dict[str, float | None] = {
            f"distinct_{n}": len(self._unique[n]) / self._total[n] if self._total[n] else 0.0
            for n in (1, 2)
        }
        out["self_bleu"] = self_bleu(self._sample, self.language)
        return out


class DiversityScorer:
    """The registry's diversity scorer (``train.seed`` seeds the self-BLEU sample)."""

    def __init__(self, ctx: ScoringContext) -> None:
        self.acc = DiversityAccumulator(ctx.language or "en", seed=ctx.cfg.train.seed)

    def update(self, outputs: Sequence[str], examples: Sequence[dict[str, Any]]) -> None:
        self.acc.update(outputs)

    def compute(self) -> dict[str, float | None]:
        return self.acc.compute()
