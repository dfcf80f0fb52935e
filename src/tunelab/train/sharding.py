"""Sharded parameters (FSDP2, DeepSpeed ZeRO): shard on CPU, gather whole tensors, re-shard.

Under FSDP2 every parameter (and its optimizer state) is a ``DTensor`` holding one shard per
process. Checkpoints store full tensors, so they look the same as a single-process
checkpoint and load into any model: :func:`full_tensor` all-gathers one tensor (every process
must call it, in the same order) and :func:`shard_like` cuts a full tensor back into the
local shard of a parameter.

On GPUs, ``accelerate launch`` with an FSDP config shards the model in
``accelerator.prepare``. Accelerate ignores FSDP on a CPU-only machine (it falls back to
DDP), so there :func:`shard_model` applies ``fully_shard`` itself, the way Accelerate's
``TRANSFORMER_BASED_WRAP`` does: each transformer block, then the root.

:func:`gather_param` and :func:`assign_param` also cover DeepSpeed ZeRO parameters
(``tunelab.train.zero``), so checkpoints look the same under either.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def fsdp_requested() -> bool:
    """True when launched with an FSDP config (``accelerate launch --config_file fsdp.yaml``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def is_sharded(model: nn.Module) -> bool:
    """True for a model sharded with FSDP2 (``fully_shard``)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_model(model: nn.Module) -> nn.Module:
    """Apply FSDP2 to each transformer block (``_no_split_modules``), then to the root."""
    from torch.distributed.fsdp import fully_shard

    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() == "true"
    block_names = set()
    for module in model.modules():
        block_names.update(getattr(module, "_no_split_modules", None) or ())
    for module in list(model.modules()):
        if type(module).__name__ in block_names:
            fully_shard(module, reshard_after_forward=reshard)
    fully_shard(model, reshard_after_forward=reshard)
    return model


def full_tensor(value: Any) -> Any:
    """The whole tensor of a ``DTensor`` (a collective call); other values unchanged."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value


def needs_gathering(model: nn.Module) -> bool:
    """True when ``model``'s weights live partly on other processes (FSDP2 or DeepSpeed ZeRO)."""
    from tunelab.train.zero import is_zero_param

    return is_sharded(model) or any(is_zero_param(p) for p in model.parameters())


def forward_needs_all(model: nn.Module) -> bool:
    """True when a forward pass needs every process (FSDP2 or ZeRO-3 gather parameters)."""
    return is_sharded(model) or any(hasattr(p, "ds_id") for p in model.parameters())


def gather_param(param: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a parameter: gathered under FSDP2 or ZeRO (collective), else itself."""
    from tunelab.train.zero import gather_zero, is_zero_param

    if is_zero_param(param):
        return gather_zero(param)
    return full_tensor(param.detach())


def assign_param(param: torch.Tensor, value: torch.Tensor) -> None:
    """Set a parameter from a whole tensor, keeping only this process's shard (collective)."""
    from tunelab.train.zero import assign_zero, is_zero_param

    if is_zero_param(param):
        assign_zero(param, value)
        return
    with torch.no_grad():
        param.copy_(shard_like(value, param))


def shard_like(full: torch.Tensor, like: Any) -> Any:
    """``full`` cut to ``like``'s local shard when ``like`` is a ``DTensor``, else ``full``."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(like, DTensor):
        return full
    full = full.to(device=like.device, dtype=like.dtype)
    return distribute_tensor(full, like.device_mesh, like.placements)


@contextmanager
def no_gradient_sync(accelerator: Any, model: nn.Module) -> Iterator[None]:
    """Skip the gradient all-reduce / reduce-scatter of a micro-batch that is not the last."""
    from tunelab.train.zero import engine_of

    if engine_of(model) is not None:  # the engine's accumulation boundary does this
        yield
    elif is_sharded(model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        with accelerator.no_sync(model):
            yield
