"""Learning-rate schedules: linear warmup, then constant, linear or cosine decay to a floor.

``lr_factor(step, ...)`` is the multiplier of each parameter group's peak LR for the update
with 0-based index ``step``. Warmup ramps linearly, ``(step + 1) / warmup``, so the first update
already moves and update ``warmup`` runs at the peak. Decay then runs from the peak (progress
0) towards ``min_lr`` (progress 1 at ``total_steps``).
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from tunelab.config import TrainConfig


def warmup_steps_for(cfg: TrainConfig, total_steps: int) -> int:
    """Warmup length in optimizer steps, from ``warmup_steps`` or ``warmup_ratio``."""
    if cfg.warmup_steps:
        return min(cfg.warmup_steps, total_steps)
    return math.ceil(cfg.warmup_ratio * total_steps)


def lr_factor(step: int, kind: str, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak LR at update ``step`` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == "linear":
        decay = 1.0 - progress
    elif kind == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown schedule {kind!r}")
    return min_ratio + (1.0 - min_ratio) * decay


def build_scheduler(optimizer: Optimizer, cfg: TrainConfig, total_steps: int) -> LambdaLR:
    """A per-optimizer-step LambdaLR for ``cfg.scheduler`` with warmup and ``cfg.min_lr``."""
    warmup = warmup_steps_for(cfg, total_steps)
    min_ratio = cfg.min_lr / cfg.lr

    def factor(step: int) -> float:
        return lr_factor(step, cfg.scheduler, total_steps, warmup, min_ratio)

    return LambdaLR(optimizer, factor)


def reschedule(scheduler: LambdaLR) -> None:
    """Set the learning rate of the next update from ``scheduler``'s own schedule.

    After resuming with another total of steps, the loaded state holds the LR of the old
    schedule; the steps already taken keep theirs, the remaining ones follow the new one.
    """
    scheduler.last_epoch -= 1
    scheduler.step()  # recomputes every group's LR for update ``last_epoch`` again
