"""Attention weights read from a real forward pass: one model's maps over one token sequence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tunelab.attention.rollout import rollout
from tunelab.errors import TunelabError, first_line


@dataclass
class AttentionMaps:
    """One model's attention over one input.

    ``weights`` is ``[layers, heads, queries, keys]``. The key axis holds ``virtual_keys``
    learned tokens (prompt or prefix tuning) before the input tokens; the query axis holds
    ``virtual_queries`` of them (prompt tuning's virtual tokens are queries too, a prefix's
    are not). ``tokens`` and ``special`` follow the key axis.
    """

    label: str
    tokens: list[str]
    special: list[bool]
    weights: np.ndarray
    virtual_keys: int
    virtual_queries: int

    def input_block(self) -> np.ndarray:
        """``[layers, heads, n, n]``: the input tokens' attention over the input tokens."""
        return self.weights[:, :, self.virtual_queries :, self.virtual_keys :]

    def rollout(self) -> tuple[np.ndarray, int]:
        """(rollout, offset): over every token when the maps are square (virtual tokens
        included), else over the input tokens, rows renormalised (the prefix's share
        dropped); ``offset`` is the first key token the rollout covers."""
        if self.virtual_keys == self.virtual_queries:
            return rollout(self.weights), 0
        block = self.input_block().astype(np.float64)
        return rollout(block / block.sum(axis=-1, keepdims=True)), self.virtual_keys


def token_strings(tokenizer: Any, ids: list[int]) -> tuple[list[str], list[bool]]:
    """Each token as the text it decodes to (control characters made visible) and whether it
    is a special token."""
    special_ids = set(tokenizer.all_special_ids)
    texts = []
    for token_id in ids:
        text = tokenizer.decode([token_id])
        text = text if text.isprintable() else repr(text)[1:-1]
        texts.append(text if text.strip() else (text.replace(" ", "␣") or "∅"))
    return texts, [token_id in special_ids for token_id in ids]


@torch.no_grad()
def read_attention(
    model: nn.Module, tokenizer: Any, ids: list[int], label: str, name: str
) -> AttentionMaps:
    """The attention maps of ``model`` (eval mode, eager attention) over ``ids``.

    ``name`` names the model in the error raised when it returns no attention weights.
    """
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    try:
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                    output_attentions=True)  # fmt: skip
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise unreadable(name, first_line(exc)) from None
    layers = getattr(out, "attentions", None)
    if not layers or any(a is None for a in layers):
        raise unreadable(name, "its forward pass returns no attention weights")
    weights = torch.stack([a[0].float() for a in layers]).cpu().numpy()
    tokens, special = token_strings(tokenizer, ids)
    virtual_keys = weights.shape[-1] - len(ids)
    virtual_queries = weights.shape[-2] - len(ids)
    tokens = [f"<v{i}>" for i in range(virtual_keys)] + tokens
    special = [True] * virtual_keys + special
    return AttentionMaps(label, tokens, special, weights, virtual_keys, virtual_queries)


def unreadable(name: str, why: str) -> TunelabError:
    """The error for a model whose attention cannot be read."""
    return TunelabError(
        f"{name}: the attention weights of this model cannot be read ({why}); attention maps "
        "need a transformer whose eager attention returns them (BERT, Llama, Qwen2, GPT-2...)"
    )
