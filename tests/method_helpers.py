"""Helpers for the model/method/export/inference tests: configs, batches and perturbations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab.config import RunConfig
from tunelab.methods import apply_method
from tunelab.models import load_model

LABELS = ["neg", "neu", "pos"]


def run_cfg(
    model_dir: Path, task: str, method: dict[str, Any], out: Path | str = "run"
) -> RunConfig:
    """A valid run config for ``model_dir`` and ``method`` (data is never read)."""
    fmt = "classification" if task == "classification" else "chat"
    return RunConfig.model_validate(
        {
            "model": {"name_or_path": str(model_dir)},
            "data": {"path": "unused.jsonl", "format": fmt},
            "method": method,
            "output": {"dir": str(out)},
        }
    )


def build(model_dir: Path, task: str, method: dict[str, Any], out: Path | str = "run"):
    """(config, base model with the method applied)."""
    cfg = run_cfg(model_dir, task, method, out)
    labels = LABELS if task == "classification" else None
    model = apply_method(load_model(cfg.model, task, labels), cfg.method, task)
    return cfg, model


def batch(task: str, seed: int = 0, size: int = 4, length: int = 12) -> dict[str, torch.Tensor]:
    """A fixed random batch with labels."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 300, (size, length), generator=gen)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    out["labels"] = torch.arange(size) % 3 if task == "classification" else ids.clone()
    return out


def logits(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Eval-mode logits without labels."""
    model.eval()
    with torch.no_grad():
        return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits


def perturb(model: nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Add noise to every trainable tensor, as if it had been trained (zero-init B, up, ...)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=gen) * scale)


def trainable_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}
