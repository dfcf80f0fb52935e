"""Evaluation: the metric registry (``registry``), metrics (one module per family), the
``tunelab eval`` runner, validation during training and the prompting-vs-fine-tuning comparison.

The entry points load on first use, so light submodules (``wordnet_setup``) import without
torch.
"""

from __future__ import annotations

from tunelab.lazy_exports import lazy_getattr

_EXPORTS = {
    "compare_prompting": "tunelab.evaluate.prompting",
    "evaluate": "tunelab.evaluate.runner",
    "evaluate_model": "tunelab.evaluate.runner",
    "validation_metrics": "tunelab.evaluate.validation",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
