"""Layer freezing: train the top N blocks (+ final norm, pooler, task head) or regex matches.

With neither ``top_n_layers`` nor ``patterns`` set, the top two blocks train (all of them in a
model with fewer).
"""

from __future__ import annotations

import re

from torch import nn

from tunelab.config import FreezeSettings, Task
from tunelab.errors import TunelabError
from tunelab.methods.common import after_blocks, find_blocks, head_names, set_trainable

DEFAULT_TOP_N = 2
"""Blocks trained when neither ``top_n_layers`` nor ``patterns`` is given."""


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
        n = settings.top_n_layers or min(DEFAULT_TOP_N, len(blocks))
        if n > len(blocks):
            raise TunelabError(
                f"method.freeze.top_n_layers is {n} but the model has {len(blocks)} blocks"
            )
        top = tuple(f"{blocks_name}.{i}." for i in range(len(blocks) - n, len(blocks)))
        chosen = {name for name in names if name.startswith(top)}
        chosen |= after_blocks(model, blocks_name)
    return (chosen | head) if settings.train_head else (chosen - head)


def apply_freeze(model: nn.Module, settings: FreezeSettings, task: Task) -> nn.Module:
    """Freeze everything except the targets of ``settings``."""
    set_trainable(model, freeze_targets(model, settings, task))
    return model
