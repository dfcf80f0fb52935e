"""Whole tensors of sharded parameters (FSDP2 ``DTensor``, DeepSpeed ZeRO): gather, re-shard.

Under FSDP2 every parameter (and its optimizer state) is a ``DTensor`` holding one shard per
process; under DeepSpeed ZeRO the engine partitions the fp32 masters (and, in stage 3, the
module's parameters). Checkpoints store full tensors, so they look the same as a
single-process checkpoint and load into any model: :func:`gather_param` / :func:`full_tensor`
all-gather one tensor (every process must call them, in the same order) and
:func:`assign_param` / :func:`shard_like` cut a full tensor back into this process's shard.

How a model is sharded in the first place is its training backend's job
(``tunelab.train.backends``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def is_sharded(model: nn.Module) -> bool:
    """True for a model sharded with FSDP2 (``fully_shard``)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_tensor(value: Any) -> Any:
    """The whole tensor of a ``DTensor`` (a collective call); other values unchanged."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value


def needs_gathering(model: nn.Module) -> bool:
    """True when ``model``'s weights live partly on other processes (FSDP2 or DeepSpeed ZeRO)."""
    return is_sharded(model) or any(is_zero_param(p) for p in model.parameters())


def forward_needs_all(model: nn.Module) -> bool:
    """True when a forward pass needs every process (FSDP2 or ZeRO-3 gather parameters)."""
    return is_sharded(model) or any(hasattr(p, "ds_id") for p in model.parameters())


def gather_param(param: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a parameter: gathered under FSDP2 or ZeRO (collective), else itself."""
    if is_zero_param(param):
        return gather_zero(param)
    return full_tensor(param.detach())


def assign_param(param: torch.Tensor, value: torch.Tensor) -> None:
    """Set a parameter from a whole tensor, keeping only this process's shard (collective)."""
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


# ----------------------------------------------------------------------------- DeepSpeed ZeRO


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
