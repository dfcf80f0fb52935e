"""DeepSpeed ZeRO (stages 1-3) under tunelab's own training loop.

Launched with an Accelerate DeepSpeed config (``accelerate launch --config_file
examples/accelerate/deepspeed-zero2.yaml``), ``accelerator.prepare`` wraps the model in a
DeepSpeed engine whose ZeRO optimizer partitions the optimizer state (stage 1), the gradients
(stage 2) and the parameters (stage 3) across the processes. tunelab keeps its loop and drives
the engine itself (:class:`ZeroEngine`):

- the engine's micro-batch size, accumulation steps and clipping come from ``train.*``
  (:func:`configure_engine`), so the DeepSpeed file only chooses the stage and offloading;
- each micro-batch's backward runs without DeepSpeed's ``1/gradient_accumulation_steps``
  (the loop already divides by the global number of loss items) and the last one marks the
  accumulation boundary (:func:`zero_backward`); one ``engine.step()`` per optimizer step
  reduces, clips (``train.max_grad_norm``) and updates (:func:`zero_step`);
- checkpoints hold whole tensors in tunelab's format: ``ZeroOptimizerState``
  (``zero_optimizer.py``) shows the partitioned optimizer as a torch optimizer over whole
  parameters, and ``tunelab.train.sharding`` gathers and sets whole parameters. A checkpoint
  written under ZeRO is the same as a 1-process one and resumes under any stage.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from tunelab.config import TrainConfig
from tunelab.errors import TunelabError
from tunelab.train.backends.base import AcceleratorOptions, StepOutcome
from tunelab.train.backends.single import SingleProcess, new_accelerator
from tunelab.train.backends.zero_optimizer import ZeroOptimizerState
from tunelab.train.sharding import needs_gathering


def deepspeed_requested() -> bool:
    """True when launched with an Accelerate DeepSpeed config."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


class ZeroEngine(SingleProcess):
    """The model inside a DeepSpeed engine, which reduces, clips and updates."""

    name = "deepspeed"

    @classmethod
    def launch(cls, cfg: TrainConfig, options: AcceleratorOptions) -> ZeroEngine:
        """Refuse what tunelab does not run under DeepSpeed, then build the Accelerator."""
        check_deepspeed(cfg)
        accelerator = new_accelerator(False, options)  # DeepSpeed also runs on CPU
        fix_process_count(accelerator)
        check_zero_stage(accelerator)
        return cls(accelerator, cfg)

    def prepare(self, model: nn.Module, optimizer: Any) -> tuple[nn.Module, Any]:
        """The engine and its partitioned optimizer, seen as a torch optimizer over whole
        parameters (:class:`ZeroOptimizerState`)."""
        configure_engine(self.accelerator, self.cfg)
        params = [list(group["params"]) for group in optimizer.param_groups]
        model, optimizer = self.accelerator.prepare(model, optimizer)
        return model, ZeroOptimizerState(model.optimizer, params)

    def no_sync(self, model: nn.Module) -> AbstractContextManager[None]:
        """Nothing: the engine's accumulation boundary (see :meth:`backward`) does this."""
        return nullcontext()

    def backward(self, model: nn.Module, loss: torch.Tensor, last: bool) -> None:
        """Backward through the engine; ``last`` marks the accumulation boundary."""
        zero_backward(model, loss, boundary=last)

    def step(self, model: nn.Module, optimizer: Any) -> StepOutcome:
        """``engine.step()``: reduce, clip and apply (the optimizer's own step does nothing)."""
        grad_norm, overflow = zero_step(model)
        return StepOutcome(grad_norm, math.isfinite(grad_norm) or overflow, overflow)

    def unwrap(self, model: nn.Module) -> nn.Module:
        """The module inside the engine."""
        return self.accelerator.unwrap_model(model)

    def validates_everywhere(self, model: nn.Module) -> bool:
        """ZeRO-3: every process validates (each forward pass gathers the partitions)."""
        return any(hasattr(p, "ds_id") for p in model.parameters())

    def whole_model(self, model: nn.Module, rebuild: Callable[[], nn.Module]) -> nn.Module | None:
        """As for FSDP: the gathered weights in a fresh copy built outside ``zero.Init``."""
        if needs_gathering(self.unwrap(model)):
            end_zero3_model_init()
        return super().whole_model(model, rebuild)

    def summary(self, model: nn.Module) -> dict[str, Any]:
        """The ZeRO stage and what the engine offloads to CPU memory."""
        return {
            **super().summary(model),
            "zero_stage": zero_stage(model),
            "zero_offload": zero_offload(model),
        }


def check_deepspeed(cfg: TrainConfig) -> None:
    """Refuse, at start, what tunelab does not run under DeepSpeed."""
    if importlib.util.find_spec("deepspeed") is None:
        raise TunelabError(
            "launched with a DeepSpeed config, but deepspeed is not installed; "
            "`pip install deepspeed` (tested: 0.19.8) or launch with examples/accelerate/fsdp.yaml"
        )
    if cfg.skip_nonfinite:
        raise TunelabError(
            "train.skip_nonfinite is not supported under DeepSpeed (its engine applies the "
            "update before tunelab sees the gradient norm); set it to false (the run then stops "
            "at a non-finite loss) or launch with examples/accelerate/fsdp.yaml"
        )


def fix_process_count(accelerator: Any) -> None:
    """Correct Accelerate's process count under DeepSpeed on a CPU-only machine.

    There DeepSpeed initialises the process group while Accelerate (1.15) sees no backend and
    records one process, so every process would act as the main one. The counts are taken
    from ``torch.distributed``; nothing changes where Accelerate got them right (GPUs).
    """
    import torch.distributed as dist
    from accelerate.state import AcceleratorState, PartialState

    if not dist.is_initialized() or accelerator.num_processes == dist.get_world_size():
        return
    counts = {
        "num_processes": dist.get_world_size(),
        "process_index": dist.get_rank(),
        "local_process_index": int(os.environ.get("LOCAL_RANK", dist.get_rank())),
    }
    PartialState._shared_state.update(counts)
    AcceleratorState._shared_state.update(counts)


def check_zero_stage(accelerator: Any) -> None:
    """Refuse ZeRO stage 0 (no partitioning: plain data parallelism, which is DDP's job)."""
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    if ds.get("zero_optimization", {}).get("stage", 0) == 0:
        raise TunelabError(
            "DeepSpeed with zero_stage 0 is plain data parallelism, which tunelab runs as DDP: "
            "launch with examples/accelerate/ddp.yaml, or set zero_stage 1-3 in the DeepSpeed "
            "config"
        )


def configure_engine(accelerator: Any, cfg: TrainConfig) -> None:
    """Set the engine's batch sizes, accumulation and clipping from ``train.*``."""
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    steps = cfg.gradient_accumulation_steps
    ds["train_micro_batch_size_per_gpu"] = cfg.batch_size
    ds["gradient_accumulation_steps"] = steps
    ds["train_batch_size"] = cfg.batch_size * steps * accelerator.num_processes
    ds["gradient_clipping"] = cfg.max_grad_norm or 0.0
    ds["zero_allow_untested_optimizer"] = True  # tunelab's torch AdamW/SGD
    ds["zero_force_ds_cpu_optimizer"] = False  # ... also with the optimizer offloaded to CPU
    accelerator.gradient_accumulation_steps = steps


def zero_stage(engine: Any) -> int | None:
    """The ZeRO stage of a DeepSpeed engine (0-3)."""
    return engine.zero_optimization_stage()


def zero_offload(engine: Any) -> list[str]:
    """What a DeepSpeed engine offloads to CPU memory: ``optimizer`` and/or ``param``."""
    configs = {"optimizer": engine.zero_offload_optimizer(), "param": engine.zero_offload_param()}
    return [
        name
        for name, c in configs.items()
        if c is not None and str(getattr(c.device, "value", c.device)) == "cpu"
    ]


def zero_backward(engine: Any, loss: torch.Tensor, boundary: bool) -> None:
    """Backward one micro-batch; ``boundary`` marks the last one of the optimizer step."""
    engine.set_gradient_accumulation_boundary(boundary)
    engine.backward(loss, scale_wrt_gas=False)


def zero_step(engine: Any) -> tuple[float, bool]:
    """Reduce, clip and apply the accumulated gradients.

    Returns the gradient norm before clipping and whether DeepSpeed's fp16 loss scaler
    skipped the update (an overflow, which also lowers its scale).
    """
    engine.step()
    norm = engine.get_global_grad_norm()
    norm = float(norm) if norm is not None else float("nan")
    return norm, not engine.was_step_applied()


def end_zero3_model_init() -> None:
    """Let Transformers build whole models again after training.

    Accelerate registers its DeepSpeed config with Transformers, which then creates every
    model under ZeRO-3's ``zero.Init`` (partitioned at construction, a collective call); the
    unsharded copy built on the main process at the end must not be.
    """
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
