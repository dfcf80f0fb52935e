"""Which metrics each task produces, and whether lower or higher is better.

One source for the evaluation runner (``eval.metrics``), validation during training (the
``eval_*`` names ``train.early_stopping.metric`` can pick) and the checks run before a run
starts. No heavy imports: ``tunelab validate`` uses it.
"""

from __future__ import annotations

from typing import Literal

Mode = Literal["min", "max"]

CLASSIFICATION_METRICS = frozenset({"accuracy", "f1", "auc", "confusion_matrix", "efficiency"})
LM_METRICS = frozenset({"perplexity", "efficiency"})
GENERATION_METRICS = frozenset({"bleu", "rouge", "meteor", "diversity", "consistency"})
QA_METRICS = frozenset({"exact_match", "qa_f1"})

# what tunelab.evaluate.validation.validation_metrics returns, with the trainer's eval_ prefix
VALIDATION_METRICS = {
    "classification": ("eval_loss", "eval_accuracy", "eval_f1_macro"),
    "causal_lm": ("eval_loss", "eval_perplexity"),
}

# parts of metric names -> direction (read without the eval_ prefix)
LOWER_IS_BETTER = ("loss", "perplexity", "ppl")
HIGHER_IS_BETTER = ("accuracy", "f1", "auc", "bleu", "rouge", "meteor", "exact_match")
HIGHER_IS_BETTER_WORDS = ("acc", "em")


def allowed_eval_metrics(task: str, data_format: str) -> frozenset[str]:
    """The ``eval.metrics`` that apply to ``task`` with ``data_format``."""
    if task == "classification":
        return CLASSIFICATION_METRICS
    if data_format == "text":
        return LM_METRICS
    allowed = LM_METRICS | GENERATION_METRICS
    return allowed | QA_METRICS if data_format == "qa" else allowed


def eval_metrics_problem(task: str, data_format: str, metrics: list[str]) -> str | None:
    """The message for ``metrics`` that do not apply to the task and format (None when all do)."""
    allowed = allowed_eval_metrics(task, data_format)
    wrong = [m for m in metrics if m not in allowed]
    if not wrong:
        return None
    return (
        f"eval.metrics: {', '.join(wrong)} do not apply to {task} with data.format "
        f"{data_format}; choose from {', '.join(sorted(allowed))}"
    )


def infer_mode(metric: str) -> Mode | None:
    """``min`` for losses and perplexity, ``max`` for scores (accuracy, F1, AUC, BLEU, ROUGE,
    METEOR, exact match: names containing one of them, or the words ``acc``/``em``); None when
    the name says neither. ``eval_f1_macro`` -> max, ``eval_loss`` -> min.
    """
    name = metric.lower().removeprefix("eval_")
    if any(part in name for part in LOWER_IS_BETTER):
        return "min"
    words = set(name.replace("-", "_").split("_"))
    if any(part in name for part in HIGHER_IS_BETTER) or words & set(HIGHER_IS_BETTER_WORDS):
        return "max"
    return None
