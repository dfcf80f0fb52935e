"""Evaluation: the metric registry (``registry``), metrics (one module per family), the
``tunelab eval`` runner, validation during training and the prompting-vs-fine-tuning comparison.

The entry points load on first use, so light submodules (``wordnet_setup``) import without
torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compare_prompting": "tunelab.evaluate.prompting",
    "evaluate": "tunelab.evaluate.runner",
    "evaluate_model": "tunelab.evaluate.runner",
    "validation_metrics": "tunelab.evaluate.validation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
