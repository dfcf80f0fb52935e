"""Non-finite steps and loss / gradient-norm spikes (``train.instability``).

``action: stop`` (the default): a non-finite loss or gradient stops the run with advice, or is
skipped and counted with ``train.skip_nonfinite``. ``action: rollback``: a non-finite step, a
loss above ``spike_factor`` times the median of the last ``window`` good steps, or a gradient
norm above ``grad_spike_factor`` times theirs restores the last good trainable weights and
optimizer state, multiplies the learning rate by ``lr_factor`` and continues with the next
batches (the one that spiked is not retried); the instability after ``max_rollbacks``
rollbacks stops the run with a diagnosis.

A step's loss and gradient norm are measured on the weights before its update, so a copy
taken after step ``t`` is trusted ("good") only once step ``t + 1`` is judged fine.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from tunelab.config import TrainConfig
from tunelab.errors import TunelabError

ROLLBACK_BACKENDS = ("single", "ddp")  # whole, identical trainable tensors on every process


@dataclass
class Snapshot:
    """CPU copies of the trainable weights and the optimizer state after ``step``."""

    step: int
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]


def to_cpu(value: Any) -> Any:
    """A deep copy of ``value`` with every tensor copied to CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(v) for v in value)
    return value


def nonfinite_what(loss: float) -> str:
    return f"loss {loss}" if not math.isfinite(loss) else "gradient norm"


def handle_nonfinite(cfg: TrainConfig, state: Any, loss: float, message: Callable) -> None:
    """``action: stop``: stop with advice on a non-finite loss or gradient, or count and skip."""
    what = nonfinite_what(loss)
    if not cfg.skip_nonfinite:
        raise TunelabError(
            f"non-finite {what} at step {state.step}: try a lower train.lr, a warmup "
            "(train.warmup_steps), gradient clipping (train.max_grad_norm) or train.precision "
            "fp32/bf16; or set train.skip_nonfinite: true to skip such updates, or "
            "train.instability.action: rollback"
        )
    state.skipped_steps += 1
    message(
        f"[yellow]warning:[/] non-finite {what} at step {state.step}; update skipped "
        f"({state.skipped_steps} so far)"
    )


@dataclass
class StabilityGuard:
    """Judges each step and rolls back when ``train.instability.action`` is rollback."""

    cfg: TrainConfig
    losses: deque = field(default_factory=deque)
    grad_norms: deque = field(default_factory=deque)
    good: Snapshot | None = None  # confirmed by a later good step
    pending: Snapshot | None = None  # taken after the last update, not yet confirmed

    @property
    def rollback(self) -> bool:
        return self.cfg.instability.action == "rollback"

    def problem(self, loss: float, grad_norm: float, finite: bool) -> str | None:
        """Why this step is unstable (non-finite, a spike), or None."""
        if not finite or not math.isfinite(loss):
            return f"non-finite {nonfinite_what(loss)}"
        settings = self.cfg.instability
        if len(self.losses) < min(settings.min_history, settings.window):
            return None
        checks = (("loss", loss, self.losses, settings.spike_factor),
                  ("gradient norm", grad_norm, self.grad_norms, settings.grad_spike_factor))  # fmt: skip
        for name, value, history, factor in checks:
            median = statistics.median(history)
            if factor is not None and math.isfinite(value) and value > factor * median > 0:
                return f"{name} spike {value:.4g} > {factor:g} x median {median:.4g}"
        return None

    def start(self, backend: Any, model: Any, optimizer: Any, step: int) -> None:
        """The state training starts from is good (rollback only)."""
        if not self.rollback:
            return
        if backend.name not in ROLLBACK_BACKENDS:
            raise TunelabError(
                f"train.instability.action rollback works with one process or DDP, not "
                f"{backend.name}; use action: stop (or train.skip_nonfinite) there"
            )
        self.good = self.take(backend.unwrap(model), optimizer, step)

    def take(self, model: Any, optimizer: Any, step: int) -> Snapshot:
        from tunelab.methods import trainable_state_dict

        weights = to_cpu(trainable_state_dict(model))
        return Snapshot(step, weights, to_cpu(optimizer.state_dict()))

    def accept(self, loss: float, grad_norm: float, step: int, model: Any, optimizer: Any) -> None:
        """A good step: its values join the window; the pending copy is now trusted."""
        window = self.cfg.instability.window
        for history, value in ((self.losses, loss), (self.grad_norms, grad_norm)):
            history.append(value)
            while len(history) > window:
                history.popleft()
        if self.pending is not None:
            self.good, self.pending = self.pending, None
        if step % self.cfg.instability.snapshot_every == 0:
            self.pending = self.take(model, optimizer, step)

    def restore(self, model: Any, optimizer: Any, scheduler: Any) -> int:
        """Load the good copy, lower the LR; return the step the copy was taken after."""
        from tunelab.methods import load_trainable_state_dict
        from tunelab.train.schedule import reschedule

        assert self.good is not None
        load_trainable_state_dict(model, self.good.weights)
        optimizer.load_state_dict(self.good.optimizer)
        scheduler.base_lrs = [lr * self.cfg.instability.lr_factor for lr in scheduler.base_lrs]
        reschedule(scheduler)  # the next update's LR from the lowered peak
        self.pending = None
        return self.good.step


def diagnosis(rollbacks: list[dict[str, Any]], lr: float) -> str:
    """The error when the rollbacks did not steady the run."""
    seen = "; ".join(f"step {r['step']}: {r['reason']}" for r in rollbacks[-4:])
    return (
        f"training is unstable after {len(rollbacks) - 1} rollbacks ({seen}); the LR is now "
        f"{lr:.3g}. Try a lower train.lr, a warmup (train.warmup_ratio: 0.05), gradient "
        "clipping (train.max_grad_norm: 1.0), train.precision fp32/bf16 instead of fp16, or "
        "check the data around these steps; `tunelab doctor RUN_DIR` shows the curves' evidence"
    )


def after_step(loop: Any, state: Any, result: Any, monitor: Any) -> None:
    """Judge the step just taken: accept it, skip or stop (action stop), or roll back."""
    guard: StabilityGuard = loop.stability
    model = loop.backend.unwrap(loop.model)
    if not guard.rollback:
        if not result.finite:
            handle_nonfinite(loop.cfg, state, result.loss, monitor.message)
        return
    if result.overflow:  # the fp16 loss scaler skipped this update itself: nothing to judge
        return
    reason = guard.problem(result.loss, result.grad_norm, result.finite)
    if reason is None:
        guard.accept(result.loss, result.grad_norm, state.step, model, loop.optimizer)
        return
    state.rollbacks.append({"step": state.step, "reason": reason})
    if len(state.rollbacks) > loop.cfg.instability.max_rollbacks:
        message = diagnosis(state.rollbacks, loop.optimizer.param_groups[0]["lr"])
        monitor.log("error", state.step, {"error": "unstable", "message": message})
        raise TunelabError(message)
    restored = guard.restore(model, loop.optimizer, loop.scheduler)
    state.lr_scale *= loop.cfg.instability.lr_factor
    state.rollbacks[-1].update(restored_step=restored, lr_scale=state.lr_scale)
    monitor.log("rollback", state.step, state.rollbacks[-1])
    monitor.message(
        f"[yellow]warning:[/] {reason} at step {state.step}: rolled back to the weights after "
        f"step {restored}, learning rate x{state.lr_scale:g} "
        f"({len(state.rollbacks)}/{loop.cfg.instability.max_rollbacks} rollbacks)"
    )
