"""Full fine-tuning: every parameter trains; the artifact is the whole model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.methods.base import Method

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config.section import Section, Task


class Full(Method):
    name = "full"
    description = "every parameter trains; the artifact is the whole model"
    whole_model = True
    layerwise_lr = True

    def apply(self, model: nn.Module, settings: Section | None, task: Task) -> nn.Module:
        """Make every parameter trainable."""
        for param in model.parameters():
            param.requires_grad_(True)
        return model

    def save(self, model: nn.Module, folder: Path, info: dict[str, Any]) -> None:
        """``save_pretrained``: ``config.json`` + ``model.safetensors``."""
        model.save_pretrained(folder)


FULL = Full()
