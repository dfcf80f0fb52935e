"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from torch import nn


def apply_full(model: nn.Module) -> nn.Module:
    """Make every parameter trainable."""
    for param in model.parameters():
        param.requires_grad_(True)
    return model
