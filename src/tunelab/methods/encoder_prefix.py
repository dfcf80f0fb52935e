"""Prefix tuning for encoders (BERT family), written in tunelab, P-Tuning v2 style.

Transformers 5's BERT takes no ``past_key_values``, through which PEFT passes its prefixes, so
PEFT cannot prefix-tune it. Here every self-attention layer gets a :class:`LayerPrefix`:
learned keys and values of shape ``[num_virtual_tokens, hidden]`` that are prepended to the
layer's own keys and values, with the attention mask extended so every token attends to them.
The attention modules' config copies name :data:`ATTENTION_NAME`, a Transformers attention
function (registered through ``AttentionInterface``, like ``train/fast_dropout.py``'s) that
adds the prefix and calls the model's own attention implementation (``sdpa`` or ``eager``).
Prefixes start random (normal, std ``initializer_range``), so the model differs from the base
from step 0; only they (and the classification head) train.
"""

from __future__ import annotations

import copy
import inspect
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tunelab.errors import TunelabError
from tunelab.methods.common import find_blocks, head_names, set_trainable

if TYPE_CHECKING:
    from tunelab.config.section import Task
    from tunelab.methods.prefix_tuning import PrefixTuningSettings

ATTENTION_NAME = "tunelab_encoder_prefix"
MODULE_NAME = "tunelab_prefix"
BASE_ATTENTION = ("sdpa", "eager")


class LayerPrefix(nn.Module):
    """One layer's learned prefix keys and values, ``[num_tokens, kv_heads * head_dim]`` each."""

    def __init__(self, num_tokens: int, width: int, std: float, base_attention: str) -> None:
        super().__init__()
        self.key = nn.Parameter(torch.randn(num_tokens, width) * std)
        self.value = nn.Parameter(torch.randn(num_tokens, width) * std)
        self.base_attention = base_attention

    def extend(
        self, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Prepend the prefix to ``key``/``value`` (``[batch, heads, seq, dim]``) and let every
        query attend to it (a bool mask gets True, an additive mask 0 in front)."""
        batch, heads, _, dim = key.shape
        tokens = self.key.shape[0]

        def heads_first(prefix: torch.Tensor) -> torch.Tensor:
            shaped = prefix.to(key.dtype).view(tokens, heads, dim).transpose(0, 1)
            return shaped.unsqueeze(0).expand(batch, -1, -1, -1)

        key = torch.cat([heads_first(self.key), key], dim=2)
        value = torch.cat([heads_first(self.value), value], dim=2)
        if mask is not None:
            attend = True if mask.dtype == torch.bool else 0
            mask = torch.cat([mask.new_full((*mask.shape[:-1], tokens), attend), mask], dim=-1)
        return key, value, mask


def prefix_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A Transformers attention function: the module's prefix, then its base attention."""
    prefix = getattr(module, MODULE_NAME)
    key, value, attention_mask = prefix.extend(key, value, attention_mask)
    attend = base_attention(module, prefix.base_attention)
    return attend(module, query, key, value, attention_mask, **kwargs)


def base_attention(module: nn.Module, name: str) -> Callable[..., Any]:
    """The attention function ``name``; ``eager`` is the one in the module's modelling file."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name == "eager":
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[name]


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every block (see :func:`is_encoder`)."""
    _, blocks = find_blocks(model)
    found = [next((m for m in block.modules() if _encoder_attention(m)), None) for block in blocks]
    if any(module is None for module in found):
        raise TunelabError(
            f"method prefix_tuning: cannot find the self-attention layers of "
            f"{type(blocks[0]).__name__}; use prompt_tuning or lora instead"
        )
    return found


def is_encoder(model: nn.Module) -> bool:
    """True when every block has a bidirectional self-attention with ``query``/``key``/``value``
    projections that dispatches through Transformers' attention interface (BERT family)."""
    try:
        _, blocks = find_blocks(model)
    except TunelabError:
        return False
    return all(any(_encoder_attention(m) for m in block.modules()) for block in blocks)


def apply_encoder_prefix(model: nn.Module, settings: PrefixTuningSettings, task: Task) -> nn.Module:
    """Give every self-attention layer a learned prefix; train only the prefixes and the head."""
    from transformers import AttentionInterface

    if settings.reparameterize:
        raise TunelabError(
            f"method prefix_tuning: reparameterize is not available for {type(model).__name__} "
            "(tunelab's encoder prefix learns the prefixes directly); set "
            "method.prefix_tuning.reparameterize: false"
        )
    base = model.config._attn_implementation
    if base not in BASE_ATTENTION:
        raise TunelabError(
            f"method prefix_tuning: model.attn_implementation {base!r} is not supported for "
            f"{type(model).__name__}; use sdpa or eager"
        )
    AttentionInterface.register(ATTENTION_NAME, prefix_attention)
    std = float(getattr(model.config, "initializer_range", 0.02))
    for module in attention_modules(model):
        weight = module.key.weight
        width = int(weight.shape[0])
        prefix = LayerPrefix(settings.num_virtual_tokens, width, std, base)
        setattr(module, MODULE_NAME, prefix.to(device=weight.device, dtype=weight.dtype))
        module.config = copy.copy(module.config)  # only the attention layers see the prefix
        module.config._attn_implementation = ATTENTION_NAME
    trainable = {n for n, _ in model.named_parameters() if f".{MODULE_NAME}." in n}
    set_trainable(model, trainable | head_names(model, task))
    return model


def _encoder_attention(module: nn.Module) -> bool:
    if not all(hasattr(module, name) for name in ("config", "query", "key", "value")):
        return False
    if getattr(module, "is_causal", False):
        return False
    try:
        source = inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return False
    return "ALL_ATTENTION_FUNCTIONS" in source and "encoder_hidden_states" not in source
