"""Generation metrics: corpus BLEU (sacrebleu), ROUGE-1/2/L F-measure (rouge-score), METEOR (nltk).

BLEU is on sacrebleu's 0-100 scale; ROUGE and METEOR are 0-1. For Chinese (``zh``) BLEU uses
sacrebleu's ``zh`` tokenizer and ROUGE/METEOR tokenise CJK text character by character.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.evaluate.language import Language, RougeTokenizer, tokenize

if TYPE_CHECKING:
    from tunelab.evaluate.registry import ScoringContext

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
TEXT_METRICS = frozenset({"bleu", "rouge", "meteor"})


def _bleu_metric(language: Language):
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize="zh" if language == "zh" else "13a")


def bleu(hypotheses: Sequence[str], references: Sequence[str], language: Language = "en") -> float:
    """sacrebleu corpus BLEU (0-100) with one reference per hypothesis."""
    return float(_bleu_metric(language).corpus_score(list(hypotheses), [list(references)]).score)


def rouge_scorer_for(language: Language):
    """A RougeScorer: rouge-score's default tokenizer for ``en``, CJK characters for ``zh``."""
    from rouge_score import rouge_scorer

    tokenizer = RougeTokenizer(language) if language == "zh" else None
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=tokenizer)


def rouge_per_example(
    hypotheses: Sequence[str], references: Sequence[str], language: Language = "en"
) -> list[dict[str, float]]:
    """ROUGE-1/2/L F-measure of every (hypothesis, reference) pair."""
    scorer = rouge_scorer_for(language)
    return [
        {k: float(s.fmeasure) for k, s in scorer.score(ref, hyp).items()}
        for hyp, ref in zip(hypotheses, references, strict=True)
    ]


def rouge(
    hypotheses: Sequence[str], references: Sequence[str], language: Language = "en"
) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure over the pairs."""
    rows = rouge_per_example(hypotheses, references, language)
    return {k: float(np.mean([r[k] for r in rows])) for k in ROUGE_TYPES}


def meteor_per_example(
    hypotheses: Sequence[str], references: Sequence[str], language: Language = "en"
) -> list[float]:
    """nltk METEOR (exact, Porter-stem and WordNet-synonym matches) of every pair."""
    from nltk.translate.meteor_score import meteor_score

    from tunelab.evaluate.wordnet_setup import require_wordnet

    require_wordnet()
    return [
        float(meteor_score([tokenize(ref, language)], tokenize(hyp, language)))
        for hyp, ref in zip(hypotheses, references, strict=True)
    ]


def meteor(
    hypotheses: Sequence[str], references: Sequence[str], language: Language = "en"
) -> float:
    """Mean METEOR over the pairs."""
    return float(np.mean(meteor_per_example(hypotheses, references, language)))


class GenerationAccumulator:
    """BLEU sufficient statistics and running ROUGE/METEOR sums, updated batch by batch."""

    def __init__(self, metrics: set[str], language: Language) -> None:
        self.metrics = metrics
        self.language = language
        self._bleu = _bleu_metric(language) if "bleu" in metrics else None
        self._bleu_stats: np.ndarray | None = None
        self._sums: dict[str, float] = {}
        self.count = 0

    def update(
        self, hypotheses: Sequence[str], references: Sequence[str]
    ) -> list[dict[str, float]]:
        """Add a batch; returns per-example scores (ROUGE, METEOR) for the predictions file."""
        rows: list[dict[str, float]] = [{} for _ in hypotheses]
        if self._bleu is not None:
            stats = np.asarray(
                self._bleu._extract_corpus_statistics(list(hypotheses), [list(references)]),
                dtype=np.int64,
            ).sum(0)
            self._bleu_stats = stats if self._bleu_stats is None else self._bleu_stats + stats
        if "rouge" in self.metrics:
            for row, scores in zip(
                rows, rouge_per_example(hypotheses, references, self.language), strict=True
            ):
                row.update(scores)
        if "meteor" in self.metrics:
            for row, score in zip(
                rows, meteor_per_example(hypotheses, references, self.language), strict=True
            ):
                row["meteor"] = score
        for row in rows:
            for key, value in row.items():
                self._sums[key] = self._sums.get(key, 0.0) + value
        self.count += len(rows)
        return rows

    def compute(self) -> dict[str, float]:
        """bleu (0-100), rouge1/rouge2/rougeL and meteor means (0-1)."""
        out = {k: v / max(self.count, 1) for k, v in self._sums.items()}
        if self._bleu is not None and self._bleu_stats is not None:
            stats = [int(x) for x in self._bleu_stats]
            out["bleu"] = float(self._bleu._compute_score_from_stats(stats).score)
        return out


class TextScorer:
    """The registry's scorer of bleu, rouge and meteor (those chosen) against the references."""

    def __init__(self, ctx: ScoringContext) -> None:
        self.acc = GenerationAccumulator(set(ctx.metrics & TEXT_METRICS), ctx.language or "en")

    def update(
        self, outputs: Sequence[str], examples: Sequence[dict[str, Any]]
    ) -> list[dict[str, float]]:
        return self.acc.update(outputs, [ex["reference"] for ex in examples])

    def compute(self) -> dict[str, float]:
        return self.acc.compute()
