"""The metrics validation computes during training, and whether lower or higher is better.

Directions come from the metric registry (``tunelab.evaluate.registry``: a metric's name
and whether higher is better), plus the generic words for losses and scores. No heavy
imports: ``tunelab validate`` uses it.
"""

from __future__ import annotations

from typing import Literal

from tunelab.evaluate.registry import METRICS

Mode = Literal["min", "max"]

# what tunelab.evaluate.validation.validation_metrics returns, with the trainer's eval_ prefix
VALIDATION_METRICS = {
    "classification": ("eval_loss", "eval_accuracy", "eval_f1_macro"),
    "causal_lm": ("eval_loss", "eval_perplexity"),
    "speech_to_text": ("eval_loss",),
}

# parts of metric names that are not registry names -> direction (read without eval_)
LOWER_IS_BETTER = ("loss", "ppl")
HIGHER_IS_BETTER_WORDS = ("acc", "em")


def infer_mode(metric: str) -> Mode | None:
    """``min`` for losses, perplexity and the word error rate (a registered lower-is-better
    name counts as a whole word, so ``answer`` is not ``wer``), ``max`` for scores (names
    containing a registered metric whose higher is better, e.g. accuracy, f1, auc, bleu, rouge, meteor, exact_match,
    or the words ``acc``/``em``); None when the name says neither. ``eval_f1_macro`` -> max,
    ``eval_loss`` -> min.
    """
    name = metric.lower().removeprefix("eval_")
    words = set(name.replace("-", "_").split("_"))
    lower = {m.name for m in METRICS.values() if m.higher_is_better is False}
    if any(part in name for part in LOWER_IS_BETTER) or words & lower:  # wer: a word, not "answer"
        return "min"
    higher = [m.name for m in METRICS.values() if m.higher_is_better]
    if any(part in name for part in higher) or words & set(HIGHER_IS_BETTER_WORDS):
        return "max"
    return None
