"""Evaluation: metrics (one module per family), the ``tunelab eval`` runner, validation during
training and the prompting-vs-fine-tuning comparison."""

from tunelab.evaluate.prompting import compare_prompting
from tunelab.evaluate.runner import evaluate, evaluate_model
from tunelab.evaluate.validation import validation_metrics

__all__ = ["compare_prompting", "evaluate", "evaluate_model", "validation_metrics"]
