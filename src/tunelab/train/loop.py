"""The training loop: one explicit loop, read it top to bottom.

Each optimizer step takes ``gradient_accumulation_steps`` micro-batches. Their loss-bearing
items (tokens for causal LM, examples for classification) are counted first and summed over
all processes; every micro-batch's summed loss is then scaled by ``world_size / total`` before
backward (DDP averages gradients over processes), so the step's gradient is the mean over
every loss item of the global batch, however the items fall into micro-batches. What differs
between one process, DDP and the other launch setups (gradient sync, backward, clip and update,
where validation runs) is the run's backend (``tunelab.train.backends``).
After the step: log, validate (every ``eval_every`` steps and at each epoch end), keep the
best checkpoint, save every ``save_every`` steps, and stop early or on SIGINT/SIGTERM.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from tunelab.config import Task, TrainConfig
from tunelab.errors import TunelabError
from tunelab.train.backends.base import Backend, StepOutcome
from tunelab.train.checkpoint import checkpoints_dir, prune_checkpoints, save_checkpoint
from tunelab.train.early_stopping import EarlyStopping
from tunelab.train.monitor import Monitor, peak_memory_mb
from tunelab.train.objective import Batch, LossFn, input_tokens, loss_items
from tunelab.train.sampler import LengthGroupedBatchSampler
from tunelab.train.signals import StopRequest, stop_on_signals

Metrics = dict[str, float]


@dataclass
class TrainData:
    """Training rows, their collate function and the (per-process, resumable) batch sampler."""

    rows: Sequence[Any]
    collate: Callable[[list[Any]], Batch]
    sampler: LengthGroupedBatchSampler
    num_workers: int = 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self.sampler) + self.sampler.start_batch

    def batches(self, epoch: int, start: int) -> Iterator[Batch]:
        """Micro-batches of ``epoch`` from batch ``start`` on (the same on every resume)."""
        self.sampler.set_epoch(epoch, start)
        loader = DataLoader(
            self.rows,
            batch_sampler=self.sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            generator=torch.Generator(),  # keeps the global RNG (dropout) untouched
        )
        return iter(loader)


@dataclass
class LoopState:
    """Where training is: saved in every checkpoint, restored on resume."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    loss_items: int = 0
    input_tokens: int = 0
    skipped_steps: int = 0
    train_time_s: float = 0.0


@dataclass
class Loop:
    """Everything the loop needs; built by :func:`tunelab.train.run.train` (or a test)."""

    backend: Backend
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    data: TrainData
    loss_fn: LossFn
    task: Task
    cfg: TrainConfig
    run_dir: Path
    total_steps: int
    checkpoint_info: dict[str, Any]
    validate: Callable[[nn.Module], Metrics] | None = None

    @property
    def accelerator(self) -> Any:
        """The run's ``accelerate.Accelerator`` (the backend's)."""
        return self.backend.accelerator


@dataclass
class StepResult:
    loss: float
    lr: float
    grad_norm: float
    loss_items: int
    input_tokens: int
    finite: bool
    overflow: bool = False  # the fp16 loss scaler skipped this update (and lowered its scale)
    loss_scale: float | None = None


def total_steps_for(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Optimizer steps of the run: ``epochs`` worth of steps, capped by ``max_steps``."""
    per_epoch = math.ceil(batches_per_epoch / cfg.gradient_accumulation_steps)
    steps = math.ceil(cfg.epochs * per_epoch)
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def fit(loop: Loop, state: LoopState, stopper: EarlyStopping, monitor: Monitor) -> str:
    """Train until ``total_steps``, early stopping or a signal; return why it stopped."""
    cfg = loop.cfg
    loop.model.train()
    batches = loop.data.batches(state.epoch, state.batch_in_epoch)
    with stop_on_signals() as stop_request:
        while state.step < loop.total_steps:
            micro = list(islice(batches, cfg.gradient_accumulation_steps))
            started = time.perf_counter()
            result = train_step(loop, micro)
            advance(state, result, len(micro), loop.data.batches_per_epoch)
            state.train_time_s += time.perf_counter() - started
            epoch_end = state.batch_in_epoch == 0
            if epoch_end:
                batches = loop.data.batches(state.epoch, 0)

            record = step_record(loop, state, result)
            monitor.advance(state.step, record)
            if not result.finite:
                handle_nonfinite(cfg, state, result, monitor)
            state.skipped_steps += result.overflow
            if state.step % cfg.log_every == 0:
                monitor.log("train", state.step, record)

            improved = False
            if should_validate(loop, state.step, epoch_end):
                metrics = validate(loop)
                improved = stopper.update(metric_value(metrics, cfg), state.step)
                monitor.log("eval", state.step, {**metrics, "is_best": improved})
            interrupted = stop_everywhere(loop.accelerator, stop_request)
            periodic = cfg.save_every is not None and state.step % cfg.save_every == 0
            if improved or periodic or interrupted:
                save(loop, state, stopper)

            if interrupted:
                monitor.message(
                    f"stopped by {stop_request.signal_name or 'a signal on another process'} "
                    f"at step {state.step}; checkpoint saved in {checkpoints_dir(loop.run_dir)}. "
                    "Resume with: tunelab train CONFIG --resume"
                )
                return "interrupted"
            if stopper.should_stop:
                monitor.message(
                    f"early stopping at step {state.step}: {cfg.early_stopping.metric} did not "
                    f"improve for {stopper.bad_evals} evaluations ({stopper.describe()})"
                )
                return "early_stopped"
    return "completed"


def train_step(loop: Loop, micro: list[Batch]) -> StepResult:
    """One optimizer step over the micro-batches ``micro`` (gradients, clip, update)."""
    optimizer = loop.optimizer
    loss, n_items, n_tokens = accumulate_gradients(
        loop.backend, loop.model, micro, loop.loss_fn, loop.task
    )
    scaler = loop.accelerator.scaler  # fp16 loss scaling, else None
    scale = scaler.get_scale() if scaler is not None else None
    outcome = StepOutcome(float("nan"), finite=False)  # a non-finite loss: no update
    if math.isfinite(loss):
        outcome = loop.backend.step(loop.model, optimizer)
    lr = loop.cfg.lr * loop.scheduler.get_last_lr()[0] / loop.scheduler.base_lrs[0]
    loop.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(
        loss, lr, outcome.grad_norm, n_items, n_tokens, outcome.finite, outcome.overflow, scale
    )


def accumulate_gradients(
    backend: Backend, model: nn.Module, micro: list[Batch], loss_fn: LossFn, task: Task
) -> tuple[float, int, int]:
    """Backward every micro-batch with its loss sum / the global loss-item count.

    Returns the step's mean loss, its loss items and its input tokens, summed over processes.
    Gradients are synchronised across processes on the last micro-batch only.
    """
    accelerator = backend.accelerator
    micro = [{k: v.to(accelerator.device) for k, v in b.items()} for b in micro]
    local_items = torch.tensor(float(sum(loss_items(b, task) for b in micro)))
    total_items = accelerator.reduce(local_items.to(accelerator.device), "sum").item()
    scale = accelerator.num_processes / max(total_items, 1.0)
    loss_sum = torch.zeros((), device=accelerator.device)
    for i, batch in enumerate(micro):
        last = i == len(micro) - 1
        with nullcontext() if last else backend.no_sync(model):
            with accelerator.autocast():
                loss, _ = loss_fn(model, batch)
            backend.backward(model, loss * scale, last)
        loss_sum += loss.detach().float()
    tokens = torch.tensor(float(sum(input_tokens(b) for b in micro)), device=accelerator.device)
    totals = accelerator.reduce(torch.stack([loss_sum, tokens]), "sum")
    return totals[0].item() / max(total_items, 1.0), int(total_items), int(totals[1].item())


def advance(state: LoopState, result: StepResult, n_batches: int, per_epoch: int) -> None:
    """Count a finished step and move the data position (rolling over at epoch end)."""
    state.step += 1
    state.loss_items += result.loss_items
    state.input_tokens += result.input_tokens
    state.batch_in_epoch += n_batches
    if state.batch_in_epoch >= per_epoch:
        state.epoch += 1
        state.batch_in_epoch = 0


def step_record(loop: Loop, state: LoopState, result: StepResult) -> Metrics:
    """What is logged for a step."""
    record = {
        "epoch": state.epoch + state.batch_in_epoch / loop.data.batches_per_epoch,
        "loss": result.loss,
        "lr": result.lr,
        "grad_norm": result.grad_norm,
        "loss_items": result.loss_items,
        "tokens_per_s": state.input_tokens / max(state.train_time_s, 1e-9),
        "memory_mb": peak_memory_mb(),
    }
    if result.loss_scale is not None:
        record["loss_scale"] = result.loss_scale
    return record


def handle_nonfinite(
    cfg: TrainConfig, state: LoopState, result: StepResult, monitor: Monitor
) -> None:
    """Stop with advice on a non-finite loss or gradient, or count and skip it."""
    what = f"loss {result.loss}" if not math.isfinite(result.loss) else "gradient norm"
    if not cfg.skip_nonfinite:
        raise TunelabError(
            f"non-finite {what} at step {state.step}: try a lower train.lr, a warmup "
            "(train.warmup_steps), gradient clipping (train.max_grad_norm) or train.precision "
            "fp32/bf16; or set train.skip_nonfinite: true to skip such updates"
        )
    state.skipped_steps += 1
    monitor.message(
        f"[yellow]warning:[/] non-finite {what} at step {state.step}; update skipped "
        f"({state.skipped_steps} so far)"
    )


def should_validate(loop: Loop, step: int, epoch_end: bool) -> bool:
    """Every ``eval_every`` steps, at each epoch end and at the last step."""
    if loop.validate is None:
        return False
    every = loop.cfg.eval_every
    return epoch_end or step == loop.total_steps or (every is not None and step % every == 0)


def validate(loop: Loop) -> Metrics:
    """Validation metrics, computed on the main process and shared with the others.

    Where each forward pass needs every process, all run it (the backend says).
    """
    from accelerate.utils import broadcast_object_list

    accelerator = loop.accelerator
    metrics: list[Metrics | None] = [None]
    model = loop.backend.unwrap(loop.model)
    if accelerator.is_main_process or loop.backend.validates_everywhere(model):
        model.eval()
        with torch.no_grad(), accelerator.autocast():
            metrics = [loop.validate(model)]
        model.train()
    if accelerator.num_processes > 1:
        broadcast_object_list(metrics)
    return metrics[0]


def metric_value(metrics: Metrics, cfg: TrainConfig) -> float:
    """The early-stopping metric from ``metrics``, or a clear error naming the choices."""
    name = cfg.early_stopping.metric
    if name not in metrics:
        raise TunelabError(
            f"train.early_stopping.metric {name!r} is not a validation metric; "
            f"choose one of {sorted(metrics)}"
        )
    return float(metrics[name])


def stop_everywhere(accelerator: Any, request: StopRequest) -> bool:
    """True on every process when any process received SIGINT/SIGTERM."""
    flag = torch.tensor(1.0 if request else 0.0, device=accelerator.device)
    return accelerator.reduce(flag, "sum").item() > 0


def save(loop: Loop, state: LoopState, stopper: EarlyStopping) -> None:
    """Write ``checkpoints/step-N`` and prune old ones, keeping the best.

    Every process takes part (weights spread over processes are gathered whole); the main
    process writes.
    """
    accelerator = loop.accelerator
    scaler = getattr(accelerator, "scaler", None)
    info = {
        **loop.checkpoint_info,
        "step": state.step,
        "total_steps": loop.total_steps,
        "loop": asdict(state),
        "early_stopping": stopper.state_dict(),
        "scheduler": loop.scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
    }
    path = checkpoints_dir(loop.run_dir) / f"step-{state.step}"
    model = loop.backend.unwrap(loop.model)
    save_checkpoint(path, model, loop.optimizer, info, write=accelerator.is_main_process)
    if accelerator.is_main_process:
        keep = {stopper.best_step} if stopper.best_step is not None else set()
        prune_checkpoints(loop.run_dir, loop.cfg.keep_last, keep)
    accelerator.wait_for_everyone()
