"""BitFit: only bias terms train (plus the task head).

Llama-style models have no biases at all and are refused. Qwen2 has biases only on the
q/k/v projections; BitFit then trains exactly those (a tiny fraction of the model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from tunelab.config.section import Section
from tunelab.methods.base import Method
from tunelab.methods.common import head_names, set_trainable

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config.section import Task


class BitFitSettings(Section):
    """Bias-only training."""

    train_head: bool = Field(default=True, description="Also train the task head.")


def bitfit_targets(model: nn.Module, settings: BitFitSettings, task: Task) -> set[str]:
    """Every bias outside the head, plus the head when ``train_head``."""
    head = head_names(model, task)
    biases = _biases(model, head)
    return biases | head if settings.train_head else biases


def _biases(model: nn.Module, head: set[str]) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.endswith("bias") and n not in head}


class BitFit(Method):
    name = "bitfit"
    settings = BitFitSettings
    description = "only the bias terms (and the task head) train"

    def supports(self, task: Task, model: nn.Module) -> str | None:
        """Refused for a model without bias terms (Llama, Mistral)."""
        if _biases(model, head_names(model, task)):
            return None
        return (
            f"method bitfit: {type(model).__name__} has no bias terms, so there is nothing to "
            "train; use method lora or adapter instead"
        )

    def apply(self, model: nn.Module, settings: BitFitSettings, task: Task) -> nn.Module:
        """Train only the bias terms (and the head)."""
        set_trainable(model, bitfit_targets(model, settings, task))
        return model


BITFIT = BitFit()
