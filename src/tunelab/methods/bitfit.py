"""BitFit: only bias terms train (plus the task head).

Llama-style models have no biases at all and are refused. Qwen2 has biases only on the
q/k/v projections; BitFit then trains exactly those (a tiny fraction of the model).
"""

from __future__ import annotations

from torch import nn

from tunelab.config import BitFitSettings, Task
from tunelab.errors import TunelabError
from tunelab.methods.common import head_names, set_trainable


def bitfit_targets(model: nn.Module, settings: BitFitSettings, task: Task) -> set[str]:
    """Every bias outside the head, plus the head when ``train_head``."""
    head = head_names(model, task)
    biases = {n for n, _ in model.named_parameters() if n.endswith("bias") and n not in head}
    if not biases:
        raise TunelabError(
            f"method bitfit: {type(model).__name__} has no bias terms, so there is nothing to "
            "train; use method lora or adapter instead"
        )
    return biases | head if settings.train_head else biases


def apply_bitfit(model: nn.Module, settings: BitFitSettings, task: Task) -> nn.Module:
    """Train only the bias terms (and the head)."""
    set_trainable(model, bitfit_targets(model, settings, task))
    return model
