"""FSDP2 (``examples/accelerate/fsdp.yaml``): parameters, gradients and optimizer state
sharded across the processes.

On GPUs, ``accelerate launch`` with an FSDP config shards the model in
``accelerator.prepare``. Accelerate ignores FSDP on a CPU-only machine (it falls back to
DDP), so there :func:`shard_model` applies ``fully_shard`` itself, the way Accelerate's
``TRANSFORMER_BASED_WRAP`` does: each transformer block, then the root. Checkpoints gather
whole tensors and resume re-shards them (``tunelab.train.sharding``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from torch import nn

from tunelab.config import TrainConfig
from tunelab.train.backends.single import SingleProcess
from tunelab.train.sharding import forward_needs_all, is_sharded


def fsdp_requested() -> bool:
    """True when launched with an FSDP config (``accelerate launch --config_file fsdp.yaml``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


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


class FullySharded(SingleProcess):
    """FSDP2: sharded by Accelerate on GPUs, by tunelab on a CPU-only machine."""

    name = "fsdp"

    def __init__(self, accelerator: Any, cfg: TrainConfig) -> None:
        super().__init__(accelerator, cfg)
        # Accelerate does not apply FSDP on CPU (it runs DDP there): tunelab shards itself
        self.shards_itself = accelerator.distributed_type.value == "MULTI_CPU"

    def shard(self, model: nn.Module) -> nn.Module:
        """On CPU, ``fully_shard`` each block and the root (before the optimizer is built)."""
        return shard_model(model) if self.shards_itself else model

    def prepare(self, model: nn.Module, optimizer: Any) -> tuple[nn.Module, Any]:
        """Accelerate shards the model on GPUs; on CPU only the optimizer is prepared."""
        if self.shards_itself:
            return model, self.accelerator.prepare(optimizer)
        return self.accelerator.prepare(model, optimizer)

    def no_sync(self, model: nn.Module) -> AbstractContextManager[None]:
        """No reduce-scatter for a micro-batch that is not the step's last."""
        if is_sharded(model):
            return _without_gradient_sync(model)
        return self.accelerator.no_sync(model)

    def validates_everywhere(self, model: nn.Module) -> bool:
        """Every process validates: each forward pass gathers parameters from all of them."""
        return forward_needs_all(model)

    def summary(self, model: nn.Module) -> dict[str, Any]:
        """Whether the model was sharded with FSDP2."""
        return {**super().summary(model), "fsdp_sharded": is_sharded(self.unwrap(model))}


@contextmanager
def _without_gradient_sync(model: Any) -> Iterator[None]:
    """Turn an FSDP2 model's gradient reduce-scatter off for the duration."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)
