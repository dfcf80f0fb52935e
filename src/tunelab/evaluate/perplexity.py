"""Perplexity of a causal LM: ``exp(sum of token NLL / number of loss tokens)`` over a split."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from tunelab.train.loss import EVAL_CHUNK_SIZE, lm_loss


class PerplexityAccumulator:
    """Running sum of token negative log-likelihoods and count of loss tokens."""

    def __init__(self) -> None:
        self.nll = 0.0
        self.tokens = 0

    def update(self, nll_sum: float, tokens: int) -> None:
        self.nll += float(nll_sum)
        self.tokens += int(tokens)

    @property
    def loss(self) -> float:
        """Mean token NLL (nats)."""
        return self.nll / self.tokens if self.tokens else float("nan")

    def compute(self) -> dict[str, float]:
        """``loss`` (mean token NLL) and ``perplexity`` = exp(loss)."""
        loss = self.loss
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}


@torch.no_grad()
def perplexity(
    model: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Teacher-forced perplexity over batches with ``labels`` (-100 = no loss), one at a time."""
    acc = PerplexityAccumulator()
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        nll, tokens = lm_loss(model, batch, EVAL_CHUNK_SIZE)
        acc.update(float(nll), tokens)
    return acc.compute()
