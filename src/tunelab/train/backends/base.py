"""The interface between the training loop and a launch setup (``Backend``).

A backend owns the ``accelerate.Accelerator`` of the run and everything that differs between
one process, DDP, FSDP2 and DeepSpeed ZeRO: building the accelerator, sharding and wrapping
the model, skipping gradient synchronisation on all but the last micro-batch, backward, the
clip-and-update of an optimizer step, unwrapping, where validation runs, and gathering the
trained weights into a whole model at the end. The loop, checkpoints and run summary reach
the launch setup only through it. Checkpoints hold whole tensors under every backend: the
optimizer that :meth:`Backend.prepare` returns has a torch ``state_dict`` whose tensors are
whole or ``DTensor`` shards (gathered by ``tunelab.train.checkpoint``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from tunelab.config import TrainConfig


@dataclass(frozen=True)
class StepOutcome:
    """What the clip-and-update of one optimizer step gave."""

    grad_norm: float  # before clipping
    finite: bool  # False: a non-finite gradient (the update was not applied)
    overflow: bool = False  # an fp16 loss scaler skipped this update (and lowered its scale)


# what a backend's ``launch`` receives: the Accelerator's keyword arguments but ``cpu``
AcceleratorOptions = dict[str, Any]
Launcher = Callable[[TrainConfig, AcceleratorOptions], "Backend"]


class Backend(Protocol):
    """How the loop drives one launch setup; a backend is built once per run by its launcher
    (``launch(train_cfg, accelerator_options)``, see ``tunelab.train.backends.registry``)."""

    name: str
    accelerator: Any  # the run's accelerate.Accelerator

    def shard(self, model: nn.Module) -> nn.Module:
        """The model with its parameters sharded before the optimizer is built over them."""
        ...

    def prepare(self, model: nn.Module, optimizer: Any) -> tuple[nn.Module, Any]:
        """Wrap the model and optimizer for training (after the scheduler is built)."""
        ...

    def no_sync(self, model: nn.Module) -> AbstractContextManager[None]:
        """Context for a micro-batch that is not the step's last: no gradient synchronisation."""
        ...

    def backward(self, model: nn.Module, loss: torch.Tensor, last: bool) -> None:
        """Backward one micro-batch; ``last`` marks the last one of the optimizer step."""
        ...

    def step(self, model: nn.Module, optimizer: Any) -> StepOutcome:
        """Clip (``train.max_grad_norm``) and apply the accumulated gradients."""
        ...

    def unwrap(self, model: nn.Module) -> nn.Module:
        """The model inside the backend's wrappers (what checkpoints load into and save)."""
        ...

    def validates_everywhere(self, model: nn.Module) -> bool:
        """Whether validation runs on every process (each forward pass needs all of them)."""
        ...

    def whole_model(self, model: nn.Module, rebuild: Callable[[], nn.Module]) -> nn.Module | None:
        """The trained model, whole, on the main process (None on the others when it is
        sharded: its trained weights are then gathered into ``rebuild()``). Collective."""
        ...

    def summary(self, model: nn.Module) -> dict[str, Any]:
        """The backend's lines of ``train_summary.json``."""
        ...
