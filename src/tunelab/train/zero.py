"""DeepSpeed ZeRO (stages 1-3) under tunelab's own training loop.

Launched with an Accelerate DeepSpeed config (``accelerate launch --config_file
examples/accelerate/deepspeed-zero2.yaml``), ``accelerator.prepare`` wraps the model in a
DeepSpeed engine whose ZeRO optimizer partitions the optimizer state (stage 1), the gradients
(stage 2) and the parameters (stage 3) across the processes. tunelab keeps its loop and drives
the engine itself:

- the engine's micro-batch size, accumulation steps and clipping come from ``train.*``
  (:func:`configure_engine`), so the DeepSpeed file only chooses the stage and offloading;
- each micro-batch's backward runs without DeepSpeed's ``1/gradient_accumulation_steps``
  (the loop already divides by the global number of loss items) and the last one marks the
  accumulation boundary (:func:`zero_backward`); one ``engine.step()`` per optimizer step
  reduces, clips (``train.max_grad_norm``) and updates (:func:`zero_step`);
- checkpoints hold whole tensors in tunelab's format: :class:`ZeroOptimizerState` shows the
  partitioned optimizer as a torch optimizer over whole parameters, and :func:`gather_zero`
  / :func:`assign_zero` gather and set whole parameters. A checkpoint written under ZeRO is
  the same as a 1-process one and resumes under any stage.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch
from torch import nn

from tunelab.config import TrainConfig
from tunelab.errors import TunelabError


def deepspeed_requested() -> bool:
    """True when launched with an Accelerate DeepSpeed config."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def unwrap_model(accelerator: Any, model: nn.Module) -> nn.Module:
    """The model inside its DDP/FSDP wrappers (or its DeepSpeed engine).

    ``accelerator.unwrap_model`` imports deepspeed whenever it is installed (which costs
    seconds and prints DeepSpeed's "Setting accelerator to CPU" warning), so only a DeepSpeed
    run calls it; any other run strips the torch wrappers here.
    """
    if deepspeed_requested():
        return accelerator.unwrap_model(model)
    wrappers: tuple[type, ...] = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    if torch.distributed.is_available():
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrappers += (FullyShardedDataParallel,)
    model = getattr(model, "_orig_mod", model)  # a wrapper compiled by Accelerate's dynamo plugin
    while isinstance(model, wrappers):
        model = model.module
    return model


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


def engine_of(model: Any) -> Any | None:
    """The DeepSpeed engine when ``model`` is one, else None."""
    return model if type(model).__name__ == "DeepSpeedEngine" else None


def zero_stage(model: Any) -> int | None:
    """The ZeRO stage of a DeepSpeed engine (0-3), else None."""
    engine = engine_of(model)
    return engine.zero_optimization_stage() if engine is not None else None


def zero_offload(model: Any) -> list[str]:
    """What a DeepSpeed engine offloads to CPU memory: ``optimizer`` and/or ``param``."""
    engine = engine_of(model)
    if engine is None:
        return []
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


# ----------------------------------------------------------------------------- whole tensors


def is_zero_param(param: torch.Tensor) -> bool:
    """True for a parameter managed by a ZeRO optimizer (partitioned in stage 3)."""
    return hasattr(param, "ds_id") or hasattr(param, "_hp_mapping")


def full_shape(param: torch.Tensor) -> torch.Size:
    """The whole shape of ``param`` (stage 3 keeps an empty placeholder in the module)."""
    return param.ds_shape if hasattr(param, "ds_id") else param.shape


def gather_zero(param: torch.Tensor) -> torch.Tensor:
    """The whole fp32 master weight of a ZeRO parameter (a collective call)."""
    from deepspeed.utils import safe_get_full_fp32_param

    return safe_get_full_fp32_param(param).detach().reshape(full_shape(param)).cpu()


def assign_zero(param: torch.Tensor, value: torch.Tensor) -> None:
    """Set a ZeRO parameter's model weight and fp32 master to ``value`` (collective)."""
    import deepspeed
    from deepspeed.utils import safe_set_full_fp32_param

    value = value.to(device=param.device)
    with (
        deepspeed.zero.GatheredParameters(
            [param], modifier_rank=0, enabled=hasattr(param, "ds_id")
        ),
        torch.no_grad(),
    ):
        param.copy_(value.to(param.dtype))
    safe_set_full_fp32_param(param, value.float())


class ZeroOptimizerState:
    """A ZeRO optimizer seen as a torch optimizer over whole parameters.

    ``state_dict()`` has torch's format (per-parameter state with whole tensors, groups whose
    ``params`` are positions), as a 1-process run saves it; ``load_state_dict`` partitions
    such a state dict back. ``step``/``zero_grad`` do nothing: the engine does both.
    """

    def __init__(self, zero_optimizer: Any, params_per_group: list[list[nn.Parameter]]) -> None:
        self.zero = zero_optimizer
        self.base = zero_optimizer.optimizer  # the torch optimizer over flat partitions
        self.param_groups = [
            {**group, "params": params}
            for group, params in zip(self.base.param_groups, params_per_group, strict=True)
        ]

    def step(self) -> None:
        """The engine steps in :func:`zero_step`."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The engine zeroes gradients after its step."""

    def _flat_partitions(self) -> list[torch.Tensor]:
        """This process's flat fp32 partitions: the tensors the base optimizer keeps state for."""
        if hasattr(self.zero, "fp32_partitioned_groups_flat"):  # stage 3
            return list(self.zero.fp32_partitioned_groups_flat)
        return list(self.zero.single_partition_of_fp32_groups)  # stages 1-2

    def _params(self) -> list[nn.Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """Whole per-parameter state (every process must call it: it gathers)."""
        from deepspeed.utils import safe_get_full_optimizer_state

        flat_state = next(iter(self.base.state.values()), {})
        keys = sorted(k for k, v in flat_state.items() if torch.is_tensor(v) and v.dim() > 0)
        shared = {k: v for k, v in flat_state.items() if k not in keys}  # e.g. Adam's step
        state = {}
        for pid, param in enumerate(self._params()):
            entry = {k: v.clone() if torch.is_tensor(v) else v for k, v in shared.items()}
            for key in keys:
                full = safe_get_full_optimizer_state(param, key)
                entry[key] = full.detach().reshape(full_shape(param)).cpu()
            state[pid] = entry
        groups, start = [], 0
        for base_group, group in zip(self.base.param_groups, self.param_groups, strict=True):
            hyper = {k: v for k, v in base_group.items() if k != "params"}
            groups.append({**hyper, "params": list(range(start, start + len(group["params"])))})
            start += len(group["params"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Partition a whole-tensor state dict into the ZeRO optimizer (collective)."""
        from deepspeed.utils import safe_set_full_optimizer_state

        entries = state_dict["state"]
        first = next(iter(entries.values()), {})
        keys = sorted(k for k, v in first.items() if torch.is_tensor(v) and v.dim() > 0)
        shared = {k: v for k, v in first.items() if k not in keys}
        for flat in self._flat_partitions():  # create the (lazily built) state, then fill it
            state = {k: torch.zeros_like(flat) for k in keys}
            for k, v in shared.items():
                state[k] = v.clone().to(flat.device) if torch.is_tensor(v) else v
            self.base.state[flat] = state
        link = getattr(self.zero, "_lazy_init_hp_params_optimizer_state", None)
        if link is not None:  # stages 1-2 map each parameter to its slice of the partitions
            self.zero._hp_optimizer_states_linked = False
            link()
        for pid, param in enumerate(self._params()):
            for key in keys:
                value = entries[pid][key].to(device=param.device, dtype=torch.float32)
                safe_set_full_optimizer_state(param, value, key)
        for base_group, saved in zip(
            self.base.param_groups, state_dict["param_groups"], strict=True
        ):
            base_group.update({k: v for k, v in saved.items() if k != "params"})
