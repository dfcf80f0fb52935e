"""Bottleneck adapters (Houlsby, Pfeiffer), written in tunelab.

Each adapted sublayer output projection (``o_proj``/``down_proj`` in Llama, ``attn.c_proj``/
``mlp.c_proj`` in GPT-2, ``attention.output.dense``/``output.dense`` in BERT) is wrapped so its
output ``y`` becomes ``y + up(dropout(act(down(y))))``, before the block's residual add.
``up`` starts at zero, so the adapted model computes exactly the base model at step 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunelab.config import AdapterSettings, Task
from tunelab.errors import TunelabError
from tunelab.methods.common import find_blocks, head_names, set_trainable

ATTENTION_OUTPUTS = (
    "attention.output.dense",
    "self_attn.o_proj",
    "attn.c_proj",
    "self_attn.out_proj",
    "attention.dense",
)
FFN_OUTPUTS = ("output.dense", "mlp.down_proj", "mlp.c_proj", "mlp.fc2", "fc2", "mlp.dense_4h_to_h")
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


def bottleneck_size(hidden: int, settings: AdapterSettings) -> int:
    """The bottleneck width: given, or hidden / reduction_factor (default 16)."""
    if settings.bottleneck_size:
        return settings.bottleneck_size
    return max(1, hidden // (settings.reduction_factor or 16))


def adapter_sites(model: nn.Module, kind: str) -> list[str]:
    """Module paths to wrap: per block the FFN output, plus the attention output for houlsby."""
    blocks_name, blocks = find_blocks(model)
    groups = (ATTENTION_OUTPUTS, FFN_OUTPUTS) if kind == "houlsby" else (FFN_OUTPUTS,)
    sites = []
    for i, block in enumerate(blocks):
        for candidates in groups:
            found = next((c for c in candidates if _has_submodule(block, c)), None)
            if found is None:
                raise TunelabError(
                    f"method adapter: cannot find the sublayer outputs in {type(block).__name__} "
                    f"(looked for {', '.join(candidates)}); use method lora instead"
                )
            sites.append(f"{blocks_name}.{i}.{found}")
    return sites


def apply_adapter(model: nn.Module, settings: AdapterSettings, task: Task) -> nn.Module:
    """Insert adapters and train only them (plus the task head when ``train_head``)."""
    head = head_names(model, task) if settings.train_head else set()
    hidden = int(model.config.hidden_size)
    size = bottleneck_size(hidden, settings)
    for path in adapter_sites(model, settings.kind):
        base = model.get_submodule(path)
        weight = next(base.parameters())
        adapter = Bottleneck(hidden, size, settings.activation, settings.dropout)
        adapter.to(device=weight.device, dtype=weight.dtype)
        parent, _, leaf = path.rpartition(".")
        setattr(model.get_submodule(parent), leaf, AdaptedSublayer(base, adapter))
    trainable = {n for n, _ in model.named_parameters() if ".adapter." in n} | head
    set_trainable(model, trainable)
    return model


def _has_submodule(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True
