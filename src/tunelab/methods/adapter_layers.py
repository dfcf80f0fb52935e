"""The torch modules of bottleneck adapters (also copied into the exported modelling file)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


class Bottleneck(nn.Module):
    """``x + up(dropout(act(down(x))))`` with ``up`` initialised to zero."""

    def __init__(self, hidden: int, size: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(size, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.dropout(self.act(self.down(x))))


class AdaptedSublayer(nn.Module):
    """A sublayer (``base``) followed by a bottleneck adapter on its output."""

    def __init__(self, base: nn.Module, adapter: Bottleneck) -> None:
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.adapter(self.base(*args, **kwargs))
