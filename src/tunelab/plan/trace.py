"""Real training steps of the real model with every tensor they allocate counted: the bytes
live at the peak of forward+backward and of the optimizer step (activations, logits/loss,
gradients, optimizer states, temporaries), from the model's own modules and the method's
trainable set.

The counting is a ``TorchDispatchMode`` that sees every op (backward ops included), adds the
storage of each new output and subtracts it when the storage is freed. Two steps run, at one
and two copies of the longest example, so :mod:`tunelab.plan.estimate` can separate what
grows with the micro-batch from what does not.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config import TrainConfig
    from tunelab.train.objective import Batch, LossFn

AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class StepTrace:
    """Bytes a training step holds, by kind (see :func:`trace_step`)."""

    weight_bytes: int  # parameters and buffers (quantised weights as stored)
    grad_bytes: int  # gradients of the trainable parameters
    optimizer_bytes: int  # optimizer states after the step
    backward_extra: tuple[int, int]  # forward+backward peak above the weights, at 1 and 2 examples
    optimizer_extra: int  # optimizer-step peak above weights + grads + states (temporaries)
    loss_tokens: int  # loss positions of one traced example
    wall_s: float


class LiveBytes:
    """Counts the bytes of storages allocated by the ops it sees, live and at their peak."""

    def __init__(self, known: set[int]) -> None:
        self.known = set(known)  # storages that exist already (weights, inputs)
        self.live = 0
        self.peak = 0

    def reset_peak(self) -> None:
        self.peak = self.live

    def add(self, value: Any) -> None:
        import torch

        if not isinstance(value, torch.Tensor) or value.device.type == "meta":
            return
        storage = value.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or key in self.known:
            return
        self.known.add(key)
        size = storage.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        self.known.discard(key)
        self.live -= size


def counting_mode(counter: LiveBytes) -> Any:
    """A dispatch mode feeding every op's outputs to ``counter``."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Counting(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for leaf in tree_leaves(out):
                counter.add(leaf)
            return out

    return Counting()


def trace_step(
    model: nn.Module,
    batch: Batch,
    loss_fn: LossFn,
    train_cfg: TrainConfig,
    precision: str,
    device: str,
) -> StepTrace:
    """Forward+backward at one and at two examples, then one optimizer step, all counted."""
    import torch

    from tunelab.train.objective import loss_items
    from tunelab.train.optim import build_optimizer

    model.train()
    one = {k: v.to(device) for k, v in batch.items()}
    two = {k: torch.cat([v, v]) for k, v in one.items()}
    optimizer = build_optimizer(model, train_cfg)
    started = time.perf_counter()
    tensors = [*model.parameters(), *model.buffers(), *one.values(), *two.values()]
    counter = LiveBytes({t.untyped_storage().data_ptr() for t in tensors})
    extra = []
    with counting_mode(counter):
        for micro in (two, one):  # the second leaves its gradients for the step
            optimizer.zero_grad(set_to_none=True)
            counter.reset_peak()
            before = counter.live
            with autocast_for(precision, device):
                loss, _ = loss_fn(model, micro)
            loss.float().backward()
            del loss
            extra.append(counter.peak - before)
        grads = sum(_nbytes(p.grad) for p in model.parameters() if p.grad is not None)
        counter.reset_peak()
        before = counter.live
        optimizer.step()
        step_peak = counter.peak - before
    states = sum(
        _nbytes(v) for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)
    )
    optimizer.zero_grad(set_to_none=True)
    weights = sum(_nbytes(t) for t in [*model.parameters(), *model.buffers()])
    return StepTrace(
        weight_bytes=weights,
        grad_bytes=grads,
        optimizer_bytes=states,
        backward_extra=(extra[1], extra[0]),
        optimizer_extra=max(0, step_peak - states),
        loss_tokens=loss_items(one, "causal_lm") if one["labels"].dim() == 2 else 0,
        wall_s=time.perf_counter() - started,
    )


def autocast_for(precision: str, device: str) -> Any:
    """The autocast context of ``train.precision`` (as Accelerate's mixed precision)."""
    import torch

    dtype = getattr(torch, AUTOCAST.get(precision, "float32"))
    return torch.autocast(device, dtype=dtype, enabled=precision in AUTOCAST)


def _nbytes(tensor: Any) -> int:
    return tensor.numel() * tensor.element_size()
