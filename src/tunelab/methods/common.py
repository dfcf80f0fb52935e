"""Helpers shared by the methods: find the block list, the task head and the final layers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config.section import Task


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer block list: the largest ModuleList of same-typed blocks.

    Finds ``bert.encoder.layer``, ``model.layers``, ``transformer.h`` and the like.
    """
    from torch import nn

    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if best is None or size > best[0]:
            best = (size, name, module)
    if best is None:
        raise TunelabError(f"{type(model).__name__}: no list of transformer blocks found")
    return best[1], best[2]


def head_names(model: nn.Module, task: Task) -> set[str]:
    """Parameters of the task head: the freshly initialised classification head.

    The head is what sits outside the base model (``classifier``, ``score``). A causal LM's
    ``lm_head`` is pretrained, not a task head, so it is empty for ``causal_lm``.
    """
    if task != "classification":
        return set()
    prefix = getattr(model, "base_model_prefix", "") + "."
    return {n for n, _ in model.named_parameters() if not n.startswith(prefix)}


def after_blocks(model: nn.Module, blocks_name: str) -> set[str]:
    """Parameters registered after the last block (final norm, pooler, classification head).

    The pretrained LM head (output embeddings) is left out: it is as large as the embedding
    matrix, and often tied to it.
    """
    names = [n for n, _ in model.named_parameters()]
    last = max(i for i, n in enumerate(names) if n.startswith(blocks_name + "."))
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    lm_head = {id(p) for p in output.parameters()} if output is not None else set()
    params = dict(model.named_parameters())
    return {n for n in names[last + 1 :] if id(params[n]) not in lm_head}


def set_trainable(model: nn.Module, names: Iterable[str]) -> None:
    """Train exactly the parameters in ``names``; freeze everything else."""
    wanted = set(names)
    for name, param in model.named_parameters():
        param.requires_grad_(name in wanted)
