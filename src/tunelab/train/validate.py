"""Validation during training through ``tunelab.evaluate.validation.validation_metrics``.

Batches stream through the model one at a time (no logits are kept); metric names get an
``eval_`` prefix: ``eval_loss`` plus ``eval_perplexity`` (causal LM) or ``eval_accuracy`` and
``eval_f1_macro`` (classification), and whatever else the metric suite returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from tunelab.config import Task
from tunelab.train.objective import Batch

Metrics = dict[str, float]


def validation_loader(
    rows: Sequence[Any], collate: Callable[[list[Any]], Batch], batch_size: int
) -> DataLoader:
    """Sequential batches of the validation split (a private generator: no global RNG use)."""
    return DataLoader(
        rows, batch_size=batch_size, shuffle=False, collate_fn=collate, generator=torch.Generator()
    )


def make_validator(
    loader: DataLoader, task: Task, device: torch.device
) -> Callable[[nn.Module], Metrics]:
    """A function ``model -> {"eval_<metric>": value}`` over ``loader``."""
    from tunelab.evaluate.validation import validation_metrics

    def run(model: nn.Module) -> Metrics:
        metrics = validation_metrics(model, loader, task, device)
        return {f"eval_{name}": float(value) for name, value in metrics.items()}

    return run
