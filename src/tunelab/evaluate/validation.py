"""Validation metrics the trainer can compute on the fly, one batch at a time.

Keeps running sums (causal LM) or per-example probabilities (classification), never logits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from tunelab.config import Task
from tunelab.evaluate.classification import ClassificationAccumulator
from tunelab.evaluate.perplexity import PerplexityAccumulator
from tunelab.train.loss import EVAL_CHUNK_SIZE, lm_loss

_CLASSIFIER_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "pixel_values")


@torch.no_grad()
def validation_metrics(
    model: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    task: Task,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """``loss`` plus ``perplexity`` (causal LM) or ``accuracy`` and ``f1_macro`` (classification).

    ``batches`` are collated tensors with ``labels`` (token ids with -100 for causal LM, class
    indices for classification). The loss is the mean over loss tokens / examples.
    """
    was_training = model.training
    model.eval()
    ppl = PerplexityAccumulator()
    acc: ClassificationAccumulator | None = None
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        if task == "classification":
            logits = model(**{k: batch[k] for k in _CLASSIFIER_INPUTS if k in batch}).logits
            labels = batch["labels"]
            ppl.update(F.cross_entropy(logits.float(), labels, reduction="sum"), labels.numel())
            acc = acc or ClassificationAccumulator(logits.shape[-1])
            acc.update(logits, labels)
        else:
            nll, tokens = lm_loss(model, batch, EVAL_CHUNK_SIZE)
            ppl.update(float(nll), tokens)
    model.train(was_training)
    if task == "causal_lm":
        return ppl.compute()
    scores = acc.compute() if acc else {"accuracy": float("nan"), "f1_macro": float("nan")}
    return {"loss": ppl.loss, "accuracy": scores["accuracy"], "f1_macro": scores["f1_macro"]}
