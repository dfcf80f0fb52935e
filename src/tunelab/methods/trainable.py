"""What trains: the trainable-parameter summary and the trained tensors (checkpoints, artifacts)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunelab.errors import TunelabError

if TYPE_CHECKING:
    import torch
    from rich.console import Console
    from torch import nn


@dataclass
class TrainableSummary:
    """How many parameters train, and which (layer numbers collapsed into ranges)."""

    trainable: int
    total: int
    modules: list[tuple[str, int]] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0


def trainable_summary(model: nn.Module) -> TrainableSummary:
    """Count trainable and total parameters; group the trainable ones by name pattern."""
    groups: dict[str, tuple[list[int], int]] = {}
    trainable = total = 0
    for name, param in model.named_parameters():
        numel = getattr(param, "ds_numel", None) or param.numel()  # ZeRO-3: whole size
        total += numel
        if not param.requires_grad:
            continue
        trainable += numel
        numbers = [int(n) for n in re.findall(r"\.(\d+)\.", name)]
        pattern = re.sub(r"\.(\d+)\.", ".{}.", name, count=1)
        layers, count = groups.get(pattern, ([], 0))
        groups[pattern] = ([*layers, *numbers[:1]], count + numel)
    modules = [(_collapse(pattern, layers), count) for pattern, (layers, count) in groups.items()]
    return TrainableSummary(trainable, total, modules)


def _collapse(pattern: str, layers: list[int]) -> str:
    if "{}" not in pattern:
        return pattern
    low, high = min(layers), max(layers)
    span = str(low) if low == high else f"{low}-{high}"
    return pattern.replace("{}", f"[{span}]")


def print_trainable_summary(summary: TrainableSummary, console: Console) -> None:
    """Print trainable / total parameters and the trainable parameter groups."""
    console.print(
        f"trainable parameters: {summary.trainable:,} / {summary.total:,} ({summary.percent:.3f}%)"
    )
    for name, count in summary.modules[:40]:
        shown = name.removeprefix("base_model.model.").replace(".default.", ".")
        console.print(f"  {shown}  {count:,}", soft_wrap=True, highlight=False)
    if len(summary.modules) > 40:
        console.print(f"  ... and {len(summary.modules) - 40} more groups")


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Exactly the trainable tensors, keyed by parameter name (detached, contiguous).

    For a sharded model (FSDP2, DeepSpeed ZeRO) the tensors are gathered whole: every process
    must call this.
    """
    from tunelab.train.sharding import gather_param

    return {
        name: gather_param(param).contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def load_trainable_state_dict(model: nn.Module, state_dict: dict[str, Any]) -> None:
    """Copy ``state_dict`` into the trainable parameters; the key sets must match exactly.

    Full tensors are cut into each process's shard of a sharded model (a collective).
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(params))
    if missing or unexpected:
        raise TunelabError(
            f"trained weights do not fit this model: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    from tunelab.train.sharding import assign_param

    for name, param in params.items():
        assign_param(param, state_dict[name])
