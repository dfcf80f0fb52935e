"""The arithmetic of a plan: peak memory and step time of one configuration (method,
precision, gradient checkpointing, micro-batch) from a traced step and the model's shape.

Memory (bytes of tensors, steady state, i.e. after the first optimizer step):
``weights + optimizer states + max(backward peak, gradients + optimizer temporaries)``, where
the backward peak grows linearly with the micro-batch as the traced peaks at one and two
examples do (the chunked loss's logits stop growing at ``loss_chunk_size`` positions). The
process then adds what it holds before any model (measured: :func:`runtime_base_mb`, under
the allocator ``tunelab train`` will run on) and, on CPU, what the allocator keeps of freed
transient blocks: the transient bytes (activations, gradients, temporaries) times
:data:`TRANSIENT_OVERHEAD` of that allocator (``tunelab.allocator.training_allocator``).

Time: FLOPs of the step (2 per weight per token forward, 2 for input gradients, 2 more per
trainable weight, the forward again under checkpointing, attention's ``4 x seq x hidden`` per
layer) over the measured matmul speed times :data:`EFFICIENCY`; ``--probe`` replaces the
constant by measured steps of each method.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.plan.trace import StepTrace

# RSS / transient tensor bytes on CPU, by allocator: least squares over the tiny Llama's rows
# of benchmarks/plan_accuracy.py (`--fit llama`; tcmalloc 2026-12-01 18:10, glibc from that
# morning's run); jemalloc was not measured and takes tcmalloc's. See docs/planning.md.
TRANSIENT_OVERHEAD = {"system": 2.04, "tcmalloc": 1.33, "jemalloc": 1.33}
CHUNK_LOGIT_COPIES = 3  # fp32 [chunk, vocab] tensors alive in a chunk's backward
EFFICIENCY = 0.5  # achieved / measured matmul FLOP/s in a training step (no probe)
MB = 2**20


@dataclass(frozen=True)
class Shape:
    """What the step time depends on, from the model's modules and the method's trainable set."""

    linear_params: int  # weights of every linear layer (the LM head included)
    trainable_linear: int  # trainable weights inside linear layers
    layers: int
    hidden: int
    vocab: int  # LM-head outputs (0 for classification)


def tensor_parts(
    trace: StepTrace, micro: int, loss_per_example: int, chunk: int, vocab: int
) -> tuple[float, float]:
    """Steady-state peak bytes of tensors at micro-batch ``micro`` (see the module doc), as
    (held for the whole run: weights and optimizer states, transient: the larger of the
    forward+backward peak and the optimizer step's gradients and temporaries).

    The traced forward+backward peaks at one and two examples are split into a fixed part,
    a part per example, and (chunked loss) the logits of ``min(loss positions, chunk)``
    positions, which stop growing once a micro-batch has ``chunk`` loss positions.
    """
    one, two = trace.backward_extra
    logits = CHUNK_LOGIT_COPIES * 4 * vocab if chunk and loss_per_example else 0

    def capped(examples: int) -> float:
        return logits * min(examples * loss_per_example, chunk) if logits else 0.0

    per_example = (two - capped(2)) - (one - capped(1))
    fixed = one - capped(1) - per_example
    backward = fixed + micro * per_example + capped(micro)
    step = trace.grad_bytes + trace.optimizer_extra
    return trace.weight_bytes + trace.optimizer_bytes, max(backward, step)


def process_peak_mb(
    held: float, transient: float, base_mb: float, device: str, allocator: str = "system"
) -> float:
    """What the training process peaks at: RSS on CPU (the transient bytes times the
    allocator's :data:`TRANSIENT_OVERHEAD`), allocated + CUDA context on GPU."""
    overhead = TRANSIENT_OVERHEAD.get(allocator, TRANSIENT_OVERHEAD["system"])
    return base_mb + (held + transient * (overhead if device == "cpu" else 1.0)) / MB


def step_flops(shape: Shape, tokens: int, seq: int, checkpointing: bool) -> float:
    """FLOPs of forward + backward over ``tokens`` tokens padded to ``seq``."""
    attention = 4 * seq * shape.hidden * shape.layers
    forward = 2 * shape.linear_params + attention
    backward = 2 * shape.linear_params + 2 * shape.trainable_linear + 2 * attention
    return tokens * (forward * (2 if checkpointing else 1) + backward)


def step_time_s(shape: Shape, tokens: int, seq: int, checkpointing: bool, gflops: float) -> float:
    """Seconds per micro-batch from FLOPs and the measured matmul speed."""
    return step_flops(shape, tokens, seq, checkpointing) / (gflops * 1e9 * EFFICIENCY)
