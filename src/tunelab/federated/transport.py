"""What travels between server and clients: the trainable tensors only, as Flower
``ArrayRecord``s, their size in bytes, and the base model's fingerprint."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from tunelab.methods.trainable import load_trainable_state_dict, trainable_state_dict


def model_arrays(model: nn.Module) -> Any:
    """The model's trainable tensors (fp32 on CPU) as an ``ArrayRecord``."""
    from flwr.app import ArrayRecord

    return ArrayRecord(
        {k: v.detach().float().cpu() for k, v in trainable_state_dict(model).items()}
    )


def load_arrays(model: nn.Module, arrays: Any) -> None:
    """Copy an ``ArrayRecord`` of trainable tensors into ``model`` (key sets must match)."""
    state = {key: torch.from_numpy(array.numpy().copy()) for key, array in arrays.items()}
    load_trainable_state_dict(model, state)


def arrays_bytes(arrays: Any) -> int:
    """Bytes of an ``ArrayRecord``'s arrays as Flower sends them (each tensor's data plus its
    small NumPy header)."""
    return sum(len(array.data) for array in arrays.values())


def fingerprint(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) over every parameter's name, shape and dtype and the values of
    the frozen ones: equal for the same base model, whatever the trained tensors hold (for
    ``full``, which sends every tensor, the architecture)."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        tensor = param.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        if not param.requires_grad and tensor.numel():
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def in_order(arrays: Any, keys: list[str]) -> Any:
    """``arrays`` as fp32 in ``keys``' order: the model's parameter order, which clients send
    and Flower's DP clipping pairs by position (the strategies' NumPy math returns fp64)."""
    import numpy as np
    from flwr.app import Array, ArrayRecord

    return ArrayRecord(
        {key: Array.from_numpy_ndarray(arrays[key].numpy().astype(np.float32)) for key in keys}
    )
