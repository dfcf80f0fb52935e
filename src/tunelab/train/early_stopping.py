"""Early stopping and best-checkpoint tracking on one validation metric."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tunelab.config import EarlyStoppingConfig


@dataclass
class EarlyStopping:
    """Tracks the best value of ``cfg.metric`` and the evaluations since it improved."""

    cfg: EarlyStoppingConfig
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best by more than ``min_delta`` (NaN never does)."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.cfg.mode == "min":
            return value < self.best - self.cfg.min_delta
        return value > self.best + self.cfg.min_delta

    def update(self, value: float, step: int) -> bool:
        """Record an evaluation; return True when it is the new best."""
        if self.improved(value):
            self.best, self.best_step, self.bad_evals = value, step, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True after ``patience`` evaluations without improvement (never without patience)."""
        return self.cfg.patience is not None and self.bad_evals >= self.cfg.patience

    def describe(self) -> str:
        if self.best is None:
            return "no finite value yet"
        return f"best {self.best:.4f} at step {self.best_step}"

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step = state["best"], state["best_step"]
        self.bad_evals = state["bad_evals"]
