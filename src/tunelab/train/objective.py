"""What one micro-batch contributes: ``(sum of losses, number of loss-bearing items)``.

Causal LM: summed token cross-entropy over the shifted labels (``tunelab.train.loss``);
classification: summed per-example cross-entropy. The loop divides by the count over all
micro-batches of an optimizer step (and all processes) once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from tunelab.config import Task
from tunelab.modalities.registry import modality_for
from tunelab.train.loss import count_loss_tokens, lm_loss

Batch = Mapping[str, torch.Tensor]
LossFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, int]]
_CLASSIFIER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def classification_loss(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
    """Summed fp32 cross-entropy over the examples, and the number of examples."""
    inputs = {k: batch[k] for k in _CLASSIFIER_INPUTS if k in batch}
    logits = model(**inputs).logits
    labels = batch["labels"]
    return F.cross_entropy(logits.float(), labels, reduction="sum"), labels.numel()


def loss_fn_for(task: Task, chunk_size: int | None = None, fmt: str | None = None) -> LossFn:
    """The loss of ``task`` (or of the data format's modality, when it has its own); causal
    LM uses the chunked loss when ``chunk_size`` is set."""
    modality = modality_for(fmt)
    if modality is not None and (own := modality.loss_fn(chunk_size)) is not None:
        return own
    if task == "classification":
        return classification_loss
    return partial(lm_loss, chunk_size=chunk_size)


def loss_items(batch: Batch, task: Task) -> int:
    """Loss-bearing items of a batch (known before the forward pass)."""
    if task == "classification":
        return batch["labels"].numel()
    return count_loss_tokens(batch["labels"])


def input_tokens(batch: Batch) -> int:
    """Real (non-padding) input tokens, for throughput (inputs without tokens: examples)."""
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return int(mask.sum())
    if "input_ids" not in batch:
        return len(batch["labels"])
    return batch["input_ids"].numel()
