"""Out of memory at a step: halve the micro-batch, double accumulation, redo the step.

Each batch the sampler yields is cut into ``LoopState.micro_split`` micro-batches (rows
``[0:b/2]`` and ``[b/2:b]`` after one halving). The sampler, the data position and the
step's examples do not change, and the loop scales every micro-batch's loss by the step's
global loss-item count, so the effective batch and the loss stay what they were: nothing is
lost or seen twice. The split is saved in checkpoints (resume keeps it) and listed in
``train_summary.json`` (``oom_adjustments``).

Recovery runs with one process only: with several, the other processes would wait forever in
the gradient all-reduce of the failed step, so the error names the options instead.

Test hook (CPU has no CUDA out-of-memory): ``TUNELAB_TEST_OOM=ROWS`` or ``ROWS@STEP`` makes
every micro-batch of more than ``ROWS`` rows raise ``torch.OutOfMemoryError`` (from optimizer
step ``STEP`` on), as a device that holds ``ROWS`` examples would.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from tunelab.errors import TunelabError
from tunelab.train.objective import Batch, LossFn

OOM_ENV = "TUNELAB_TEST_OOM"


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator's out-of-memory error (CUDA, MPS or CPU)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and (
        "out of memory" in str(exc).lower() or "can't allocate memory" in str(exc).lower()
    )


def split_batch(batch: Batch, parts: int) -> list[Batch]:
    """``batch`` cut by rows into at most ``parts`` micro-batches, trailing padding trimmed."""
    rows = batch["input_ids"].shape[0]
    bounds = [round(i * rows / parts) for i in range(parts + 1)]
    pieces = []
    for start, end in pairwise(bounds):
        if end > start:
            pieces.append(_trim({k: v[start:end] for k, v in batch.items()}))
    return pieces


def _trim(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the padding columns every row of a right-padded 2-D batch has at its end."""
    mask = batch.get("attention_mask")
    if mask is None or mask.dim() != 2 or mask.shape[1] == 0:
        return batch
    used = int(mask.any(dim=0).nonzero().max().item()) + 1 if mask.any() else mask.shape[1]
    if used == mask.shape[1]:
        return batch
    return {k: v[:, :used] if v.dim() == 2 and v.shape[1] == mask.shape[1] else v
            for k, v in batch.items()}  # fmt: skip


def split_micro(micro: list[Batch], parts: int) -> list[Batch]:
    """Every batch of an optimizer step cut into ``parts`` micro-batches, in order."""
    if parts == 1:
        return micro
    return [piece for batch in micro for piece in split_batch(batch, parts)]


@dataclass
class InjectedOom:
    """The test hook's limit: micro-batches of more than ``rows`` rows fail from ``step`` on."""

    rows: int
    from_step: int = 1
    step: int = 0  # the optimizer step being run (set by the loop)

    @classmethod
    def from_env(cls) -> InjectedOom | None:
        text = os.environ.get(OOM_ENV, "").strip()
        if not text:
            return None
        rows, _, step = text.partition("@")
        try:
            return cls(int(rows), int(step) if step else 1)
        except ValueError:
            raise TunelabError(f"{OOM_ENV}={text!r}: give ROWS or ROWS@STEP (integers)") from None

    def wrap(self, loss_fn: LossFn) -> LossFn:
        """``loss_fn`` failing as a device holding ``rows`` examples would."""

        def limited(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
            rows = batch["input_ids"].shape[0]
            if self.step >= self.from_step and rows > self.rows:
                raise torch.OutOfMemoryError(
                    f"{OOM_ENV}: a micro-batch of {rows} rows is over the limit of {self.rows}"
                )
            return loss_fn(model, batch)

        return limited


def oom_options(batch_size: int, micro: int) -> str:
    """What to try when a step does not fit in memory."""
    return (
        f"(micro-batch {micro} of train.batch_size {batch_size}); try "
        "model.gradient_checkpointing: true, a smaller data.max_length, train.precision bf16, "
        "a parameter-efficient method (method.name: lora), or see what fits with "
        "`tunelab plan CONFIG`"
    )


def give_up_reason(on_oom: str, world_size: int, micro_size: int) -> str | None:
    """Why an out-of-memory step cannot be redone with a smaller micro-batch, or None."""
    if on_oom == "stop":
        return "train.on_oom is stop"
    if world_size > 1:
        return f"no recovery with {world_size} processes"
    if micro_size <= 1:
        return "a micro-batch of 1 does not fit"
    return None


def run_step(
    step_fn: Callable[[list[Batch]], Any],
    micro: list[Batch],
    state: Any,
    on_oom: str,
    world_size: int,
    reset: Callable[[], None],
    note: Callable[[str, dict[str, Any]], None],
    injected: InjectedOom | None = None,
) -> Any:
    """Run ``step_fn`` on ``micro`` cut by ``state.micro_split``; on out of memory, double the
    split and redo the step (``reset`` clears the failed attempt's gradients), or raise.

    ``note(message, record)`` reports each adjustment (console, metrics.jsonl).
    """
    if injected is not None:
        injected.step = state.step + 1
    while True:
        try:
            return step_fn(split_micro(micro, state.micro_split))
        except Exception as exc:
            if not is_oom(exc):
                raise
        # out of the except block: the failed attempt's frames (its activations) are freed
        reset()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        rows = max(b["input_ids"].shape[0] for b in micro)
        size = -(-rows // state.micro_split)
        step = state.step + 1
        reason = give_up_reason(on_oom, world_size, size)
        if reason is not None:
            message = f"out of memory at step {step} ({reason}) {oom_options(rows, size)}"
            note(message, {"error": "out_of_memory", "micro_batch_size": size})
            raise TunelabError(message) from None
        state.micro_split *= 2
        adjustment = {
            "step": step,
            "micro_batch_size": -(-rows // state.micro_split),
            "gradient_accumulation_steps": len(micro) * state.micro_split,
        }
        state.oom_adjustments.append(adjustment)
        note(
            f"[yellow]out of memory[/] at step {step}: micro-batch {size} -> "
            f"{adjustment['micro_batch_size']}, gradient accumulation "
            f"{adjustment['gradient_accumulation_steps']} (same effective batch); "
            "redoing the step",
            {"event": "oom_adjusted", **adjustment},
        )
