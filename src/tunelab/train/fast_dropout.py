"""Faster dropout on CPU: cheap random bits instead of torch's Bernoulli sampler.

On CPU, ``torch.nn.functional.dropout`` draws each keep/drop decision with the Bernoulli
sampler (about 14 ns per element on this machine), and attention dropout also pushes SDPA off
its fused kernel onto the math path. For BERT-style models, whose attention probabilities
``[batch, heads, seq, seq]`` get dropout in every layer, this dominates the training step.

:func:`fast_dropout` draws 16 random bits per element (``random_`` on int64 words viewed as
int16, about 5x cheaper) and drops the element when the bits fall below a threshold, so the
drop probability is ``p`` rounded to a multiple of 2^-16 (off by at most 7.6e-6); kept
elements are scaled by ``1 / (1 - p)``, as usual. The bits come from torch's default
generator, so seeds, checkpoints and exact resume work as before.

:func:`use_fast_dropout` swaps a model's ``nn.Dropout`` modules for :class:`FastDropout` and
its SDPA attention for :func:`sdpa_with_fast_dropout`, which runs plain SDPA (fused kernel)
whenever no dropout applies (evaluation, or p = 0) and otherwise the same math as SDPA with
:func:`fast_dropout` on the probabilities. With ``scope="adapters"`` (``train.fast_dropout``'s
default) it swaps only the dropout the method added (LoRA's ``lora_dropout``, the bottleneck
adapters'), leaving the model's own dropout and attention to torch. GPUs keep torch's own
kernels (their SDPA fuses dropout).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

ATTENTION_NAME = "tunelab_sdpa_fast_dropout"
_BITS = 65536


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Bool mask, False where an element is dropped (probability ``p`` to within 2^-16)."""
    numel = 1
    for size in shape:
        numel *= size
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(2**63), 2**63 - 1)  # full 64 bits (the default range leaves the top bit 0)
    bits = words.view(torch.int16)[:numel].view(shape)
    threshold = round(p * _BITS) - _BITS // 2
    return bits >= threshold


class _FastDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = keep_mask(x.shape, p, x.device)
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout of ``x`` with probability ``p`` (identity when not training or ``p == 0``)."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    return _FastDropout.apply(x, p)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` drawing its mask with :func:`fast_dropout` (same ``p``, no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def attention_math(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    is_causal: bool,
    dropout_p: float,
) -> torch.Tensor:
    """SDPA's math: softmax(QK^T * scaling + mask), dropout, times V -> ``[b, s, h, d]``.

    One example at a time, so each example's ``[heads, q, k]`` scores stay in the CPU cache
    through the mask, softmax and dropout (the whole batch's scores would stream through
    memory several times); the scaling goes into the query, the mask is applied in place,
    and the dropout's ``1 / (1 - p)`` into the small output.
    """
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves ``groups`` heads
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    query = query * scaling
    outputs = []
    for i in range(query.shape[0]):
        scores = torch.matmul(query[i], key[i].transpose(-1, -2))
        mask = None if attention_mask is None else attention_mask[min(i, len(attention_mask) - 1)]
        with torch.no_grad():  # masked scores get probability exactly 0, hence gradient 0
            apply_mask_(scores, mask, is_causal)  # too: no backward pass needed for the mask
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        if dropout_p > 0.0:
            probs = torch.where(keep_mask(probs.shape, dropout_p, probs.device), probs, 0.0)
        outputs.append(torch.matmul(probs, value[i]))
    out = torch.stack(outputs)
    if dropout_p > 0.0:
        out = out * (1.0 / (1.0 - dropout_p))
    return out.transpose(1, 2).contiguous()


def apply_mask_(scores: torch.Tensor, mask: torch.Tensor | None, is_causal: bool) -> None:
    """Set the scores of masked (or, when causal, future) positions to the dtype's minimum;
    an additive float mask is added."""
    lowest = torch.finfo(scores.dtype).min
    if is_causal:
        q_len, k_len = scores.shape[-2:]
        future = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device)
        scores.masked_fill_(future.triu(k_len - q_len + 1), lowest)
    if mask is not None and mask.dtype == torch.bool:
        scores.masked_fill_(~mask, lowest)
    elif mask is not None:
        scores.add_(mask)


def sdpa_with_fast_dropout(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """A Transformers attention function: SDPA, with :func:`fast_dropout` when training."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0.0 or not module.training:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=0.0, scaling=scaling,
            is_causal=is_causal, **kwargs,
        )  # fmt: skip
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(query.shape[2] > 1 and attention_mask is None and causal)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return attention_math(query, key, value, attention_mask, scale, causal, dropout), None


def register_attention() -> None:
    """Make :data:`ATTENTION_NAME` a Transformers attention implementation (SDPA masks)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, sdpa_with_fast_dropout)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)


def use_fast_dropout(model: nn.Module, scope: Literal["all", "adapters"] = "all") -> int:
    """Swap ``nn.Dropout`` modules for :class:`FastDropout` and SDPA attention for
    :func:`sdpa_with_fast_dropout`; return how many dropout modules were swapped.

    ``scope="adapters"``: only the dropout inside the method's layers (PEFT tuner layers such
    as LoRA's ``lora_dropout``, bottleneck adapters); the model's dropout and attention stay.
    """
    owners = adapter_layers(model) if scope == "adapters" else [model]
    swapped = 0
    for owner in owners:
        for module in owner.modules():
            for name, child in list(module.named_children()):
                if type(child) is nn.Dropout:
                    fast = FastDropout(child.p, child.inplace).train(child.training)
                    setattr(module, name, fast)
                    swapped += 1
    if scope == "adapters":
        return swapped
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "_attn_implementation", None) == "sdpa":
            register_attention()
            config._attn_implementation = ATTENTION_NAME
    return swapped


def apply_fast_dropout(model: nn.Module, setting: bool | str, device_type: str) -> int:
    """What ``train.fast_dropout`` (``setting``) asks for on ``device_type``: nothing off CPU
    or when false; every dropout for true; the method's for ``"adapters"``. Training and the
    plan's trace both call it, so the plan measures the masks training will draw."""
    if not setting or device_type != "cpu":
        return 0
    return use_fast_dropout(model, "all" if setting is True else "adapters")


def adapter_layers(model: nn.Module) -> list[nn.Module]:
    """The layers a parameter-efficient method added: PEFT tuner layers, bottleneck adapters."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from tunelab.methods.adapter_layers import Bottleneck

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer | Bottleneck)]
