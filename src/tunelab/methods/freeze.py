"""Layer freezing: train the top N blocks (+ final norm, pooler, task head) or regex matches.

With neither ``top_n_layers`` nor ``patterns`` set, the top two blocks train (all of them in a
model with fewer).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import Field, NonNegativeInt, field_validator, model_validator

from tunelab.config.section import Section, check_regexes
from tunelab.errors import TunelabError
from tunelab.methods.base import Method
from tunelab.methods.common import after_blocks, find_blocks, head_names, set_trainable

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config.section import Task

DEFAULT_TOP_N = 2
"""Blocks trained when neither ``top_n_layers`` nor ``patterns`` is given."""


class FreezeSettings(Section):
    """Layer freezing: train the top N blocks, or parameters matching patterns."""

    top_n_layers: NonNegativeInt | None = Field(
        default=None,
        description="Train only the top N transformer blocks (+ head, final norm); 0: no block, "
        "only what follows them (head, pooler, final norm: a linear probe); when neither "
        "this nor patterns is given, the top 2 blocks (all blocks of a smaller model).",
    )
    patterns: list[str] | None = Field(
        default=None, description="Regexes of parameter names to train (instead of top_n_layers)."
    )
    train_head: bool = Field(default=True, description="Also train the task head.")

    _regexes = field_validator("patterns")(check_regexes)

    @model_validator(mode="after")
    def _one_of(self) -> FreezeSettings:
        if self.top_n_layers is not None and self.patterns is not None:
            raise ValueError("give top_n_layers or patterns, not both")
        return self


def freeze_targets(model: nn.Module, settings: FreezeSettings, task: Task) -> set[str]:
    """Names of the parameters that train under ``settings``."""
    names = [n for n, _ in model.named_parameters()]
    head = head_names(model, task)
    if settings.patterns is not None:
        regexes = [re.compile(p) for p in settings.patterns]
        chosen = {n for n in names if any(r.search(n) for r in regexes)}
        if not chosen - head:
            raise TunelabError(
                f"method.freeze.patterns {settings.patterns} match no parameter; names look "
                f"like {names[0]!r}, {names[len(names) // 2]!r}"
            )
    else:
        blocks_name, blocks = find_blocks(model)
        n = settings.top_n_layers
        n = min(DEFAULT_TOP_N, len(blocks)) if n is None else n
        if n > len(blocks):
            raise TunelabError(
                f"method.freeze.top_n_layers is {n} but the model has {len(blocks)} blocks"
            )
        top = tuple(f"{blocks_name}.{i}." for i in range(len(blocks) - n, len(blocks)))
        chosen = {name for name in names if name.startswith(top)}
        chosen |= after_blocks(model, blocks_name)
    return (chosen | head) if settings.train_head else (chosen - head)


class Freeze(Method):
    name = "freeze"
    settings = FreezeSettings
    description = "the top N blocks (+ final norm, head) or parameters matching patterns train"
    layerwise_lr = True

    def apply(self, model: nn.Module, settings: FreezeSettings, task: Task) -> nn.Module:
        """Freeze everything except the targets of ``settings``."""
        set_trainable(model, freeze_targets(model, settings, task))
        return model


FREEZE = Freeze()
