"""One process: Accelerate prepares, scales (fp16) and clips; the model is used as it is.

:class:`SingleProcess` is also the base of the DDP and FSDP backends, which change only what
differs for them (``ddp.py``, ``fsdp.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from tunelab.config import TrainConfig
from tunelab.train.backends.base import AcceleratorOptions, StepOutcome
from tunelab.train.precision import enable_cpu_fp16
from tunelab.train.sharding import full_tensor, needs_gathering


def new_accelerator(cpu: bool, options: AcceleratorOptions) -> Any:
    """A fresh Accelerator (``cpu``: even where a GPU is seen), with ``options``.

    A new run in the same process may change precision or launcher (a DeepSpeed run leaves
    its type in Accelerate's process state): start clean unless processes are connected.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=not torch.distributed.is_initialized())
    return Accelerator(cpu=cpu, **options)


class SingleProcess:
    """The model trained in one process through Accelerate (mixed precision, loss scaling)."""

    name = "single"

    def __init__(self, accelerator: Any, cfg: TrainConfig) -> None:
        self.accelerator = accelerator
        self.cfg = cfg

    @classmethod
    def launch(cls, cfg: TrainConfig, options: AcceleratorOptions) -> SingleProcess:
        """Build the Accelerator (on CPU without a GPU) and the backend around it."""
        accelerator = new_accelerator(not torch.cuda.is_available(), options)
        if cfg.precision == "fp16" and accelerator.scaler is None:  # CPU: would run fp32
            enable_cpu_fp16(accelerator, cfg.fp16_initial_scale)
        return cls(accelerator, cfg)

    def shard(self, model: nn.Module) -> nn.Module:
        """Nothing to shard: every process holds the whole model."""
        return model

    def prepare(self, model: nn.Module, optimizer: Any) -> tuple[nn.Module, Any]:
        """``accelerator.prepare`` (device placement, autocast, DDP when several processes)."""
        return self.accelerator.prepare(model, optimizer)

    def no_sync(self, model: nn.Module) -> AbstractContextManager[None]:
        """One process: there is nothing to synchronise."""
        return nullcontext()

    def backward(self, model: nn.Module, loss: torch.Tensor, last: bool) -> None:
        """``accelerator.backward`` (scaled by the fp16 loss scaler when there is one)."""
        self.accelerator.backward(loss)

    def step(self, model: nn.Module, optimizer: Any) -> StepOutcome:
        """Clip, then update unless a gradient is non-finite.

        With an fp16 loss scaler, inf gradients are expected: the scaler skips those updates
        (and lowers its scale; fused optimizers skip internally), reported as an overflow.
        """
        scaler = self.accelerator.scaler  # fp16 loss scaling, else None
        scale = scaler.get_scale() if scaler is not None else None
        max_norm = self.cfg.max_grad_norm or float("inf")
        norm = self.accelerator.clip_grad_norm_(model.parameters(), max_norm)
        grad_norm = float(full_tensor(norm))
        finite = math.isfinite(grad_norm) or scaler is not None
        overflow = False
        if finite:
            optimizer.step()
            overflow = scaler is not None and scaler.get_scale() < scale
        return StepOutcome(grad_norm, finite, overflow)

    def unwrap(self, model: nn.Module) -> nn.Module:
        """The model inside its DDP/FSDP wrappers (and Accelerate's compiled wrapper).

        ``accelerator.unwrap_model`` imports deepspeed whenever it is installed (which costs
        seconds and prints DeepSpeed's "Setting accelerator to CPU" warning), so the torch
        wrappers are stripped here.
        """
        wrappers: tuple[type, ...] = (nn.parallel.DistributedDataParallel, nn.DataParallel)
        if torch.distributed.is_available():
            from torch.distributed.fsdp import FullyShardedDataParallel

            wrappers += (FullyShardedDataParallel,)
        model = getattr(model, "_orig_mod", model)  # compiled by Accelerate's dynamo plugin
        while isinstance(model, wrappers):
            model = model.module
        return model

    def validates_everywhere(self, model: nn.Module) -> bool:
        """The main process validates alone (every process holds the whole model)."""
        return False

    def whole_model(self, model: nn.Module, rebuild: Callable[[], nn.Module]) -> nn.Module | None:
        """The unwrapped model, or (sharded) its gathered weights in ``rebuild()`` on the main
        process and None on the others; every process takes part in the gathering."""
        from tunelab.methods import load_trainable_state_dict, trainable_state_dict

        model = self.unwrap(model)
        if not needs_gathering(model):
            return model
        weights = trainable_state_dict(model)
        if not self.accelerator.is_main_process:
            return None
        whole = rebuild()
        load_trainable_state_dict(whole, weights)
        return whole

    def summary(self, model: nn.Module) -> dict[str, Any]:
        """Not sharded, no ZeRO."""
        return {"fsdp_sharded": False, "zero_stage": None, "zero_offload": []}
