"""``method.name: auto``: a placeholder the planner replaces by a concrete method before
training (see ``tunelab.plan.auto`` and docs/planning.md). It never touches a model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from tunelab.config.section import Section
from tunelab.errors import TunelabError
from tunelab.methods.base import Method

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config.section import Task


class AutoSettings(Section):
    """What ``auto`` may choose from."""

    candidates: list[str] | None = Field(
        default=None,
        description="Methods auto may choose (default: every registered method the model "
        "supports, plus QLoRA when bitsandbytes is installed).",
    )
    allow_quantize: bool = Field(
        default=True, description="Let auto pick QLoRA (lora.quantize nf4) when nothing else fits."
    )


class Auto(Method):
    name = "auto"
    settings = AutoSettings
    description = "the planner chooses the method, LoRA rank/targets and batch split"
    placeholder = True

    def apply(self, model: nn.Module, settings: AutoSettings | None, task: Task) -> nn.Module:
        """Refused: ``auto`` is resolved before training (``tunelab.plan.auto.resolve_auto``)."""
        raise TunelabError(
            "method.name auto is chosen by the planner before training; run tunelab train, "
            "or call tunelab.resolve_auto(cfg) first"
        )


AUTO = Auto()
