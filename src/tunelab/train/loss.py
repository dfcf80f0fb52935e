"""Causal-LM losses returning ``(sum of token losses, number of loss tokens)``.

The trainer sums both over the micro-batches of one optimizer step and divides once, so every
loss token weighs the same however the tokens fall into micro-batches.

- :func:`causal_lm_loss`: the standard loss from the model's full logits.
- :func:`chunked_causal_lm_loss`: never materialises the ``[batch, seq, vocab]`` fp32 logits.
  It runs the decoder to the last hidden state, keeps only the positions that carry a loss,
  and applies the LM head + cross-entropy ``chunk_size`` positions at a time, each chunk under
  ``torch.utils.checkpoint`` so backward recomputes one chunk's logits at a time.
- :func:`lm_loss`: picks the chunked loss when ``chunk_size`` is set and the model supports it.
  Training uses ``train.loss_chunk_size`` (default 1024; 0 or null: the standard loss);
  validation and perplexity always use :data:`EVAL_CHUNK_SIZE` (same values, less memory).

Labels follow the Transformers convention: ``labels[:, t]`` is predicted at position ``t-1``;
-100 marks positions without a loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
EVAL_CHUNK_SIZE = 1024  # loss positions per LM-head chunk in validation and perplexity
_MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "token_type_ids", "pixel_values")


def count_loss_tokens(labels: torch.Tensor) -> int:
    """Number of positions that carry a loss (after the one-token shift)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def causal_lm_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Standard causal-LM loss from the full logits: ``(fp32 sum of token losses, count)``.

    Works for every causal LM, including PEFT prompt/prefix tuning (PEFT prepends virtual
    tokens to the logits; they are dropped here so logits align with ``labels``).
    """
    labels = batch["labels"]
    logits = model(**_inputs(batch)).logits
    logits = logits[:, -labels.shape[1] :]
    loss = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        labels[:, 1:].flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss, count_loss_tokens(labels)


def chunked_causal_lm_loss(
    model: nn.Module, batch: Mapping[str, torch.Tensor], chunk_size: int
) -> tuple[torch.Tensor, int]:
    """Causal-LM loss through the LM head ``chunk_size`` loss positions at a time.

    Same ``(sum, count)`` as :func:`causal_lm_loss` (fp32 cross-entropy per chunk), with peak
    logits memory ``chunk_size x vocab`` instead of ``batch x seq x vocab``. Requires
    :func:`supports_chunked_loss`.
    """
    decoder, head = _decoder_and_head(model)
    labels = batch["labels"]
    hidden = decoder(**_inputs(batch)).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    hidden = hidden[:, :-1][keep]  # [n_loss_tokens, hidden]
    targets = targets[keep]
    total = hidden[:0].float().sum()  # 0, still attached to the graph when nothing is kept
    grad = torch.is_grad_enabled()
    for start in range(0, targets.numel(), chunk_size):
        part = slice(start, start + chunk_size)
        if grad:
            loss = checkpoint(_chunk_loss, head, hidden[part], targets[part], use_reentrant=False)
        else:  # evaluation: nothing to recompute
            loss = _chunk_loss(head, hidden[part], targets[part])
        total = total + loss
    return total, int(targets.numel())


def lm_loss(
    model: nn.Module, batch: Mapping[str, torch.Tensor], chunk_size: int | None
) -> tuple[torch.Tensor, int]:
    """Chunked loss when ``chunk_size`` is set and supported, else the standard loss."""
    if chunk_size and supports_chunked_loss(model):
        return chunked_causal_lm_loss(model, batch, chunk_size)
    return causal_lm_loss(model, batch)


def supports_chunked_loss(model: nn.Module) -> bool:
    """Whether :func:`chunked_causal_lm_loss` applies to ``model``.

    Not for PEFT prompt/prefix tuning (virtual tokens are injected by the PEFT wrapper's
    forward), for models that post-process logits (soft-capping, logit scale) or take images
    (LLaVA: the image features enter before the decoder), or for models
    wrapped in DistributedDataParallel or a DeepSpeed engine or sharded with FSDP or ZeRO-3
    (calling the inner decoder would skip the wrapper's gradient synchronisation or the
    parameter gathering); those use :func:`causal_lm_loss`.
    """
    from tunelab.train.sharding import forward_needs_all

    if isinstance(model, nn.parallel.DistributedDataParallel) or forward_needs_all(model):
        return False
    if type(model).__name__ in ("FullyShardedDataParallel", "DeepSpeedEngine"):
        return False
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and peft_config.is_prompt_learning:
        return False
    base = _base_model(model)
    config = getattr(base, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return False
    if getattr(config, "vision_config", None) is not None:  # LLaVA: images enter before the decoder
        return False
    try:
        _decoder_and_head(model)
    except (AttributeError, NotImplementedError, TypeError):
        return False
    return True


def _chunk_loss(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return F.cross_entropy(logits, targets, reduction="sum")


def _base_model(model: nn.Module) -> nn.Module:
    """The Transformers model under a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    base = _base_model(model)
    decoder = base.get_decoder()
    head = base.get_output_embeddings()
    if decoder is None or decoder is base or head is None:
        raise AttributeError(f"{type(base).__name__} has no separate decoder and LM head")
    return decoder, head


def _inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in _MODEL_INPUTS if k in batch and batch[k] is not None}
