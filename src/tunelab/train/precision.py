"""Precision and kernel choices per device, and ``train.compile`` with a fallback.

On CPU, bf16 only pays off with native bf16 matmul (x86 AVX512_BF16 or AMX, Arm BF16):
without it PyTorch emulates bf16 and a matmul can be 100x slower than fp32. fp16 matmul on
x86 CPUs without AMX-FP16 is emulated too (about 0.3 GFLOP/s measured here). On GPU, bf16 where
supported (else fp16) with SDPA or FlashAttention-2.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX-512/AMX, aarch64 "bf16"


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty where it does not exist)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return set()
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 matmul instructions (AVX512_BF16, AMX or Arm BF16)."""
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return True
    return bool(cpu_flags() & _BF16_CPU_FLAGS)


def matmul_gflops(
    dtype: torch.dtype = torch.float32, size: int = 512, seconds: float = 0.3
) -> float:
    """Measured GFLOP/s of a ``size``^3 CPU matmul in ``dtype`` (best of repeated runs)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    return 2 * size**3 / best / 1e9


@dataclass(frozen=True)
class DeviceChoice:
    """Recommended settings for a device."""

    device: str
    precision: str  # "fp32" | "bf16" | "fp16"
    attn_implementation: str  # "sdpa" | "flash_attention_2"


def recommend(device: str | None = None) -> DeviceChoice:
    """Fastest safe precision and attention kernel for ``device`` (default: CUDA if present)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        flash = importlib.util.find_spec("flash_attn") is not None
        return DeviceChoice(device, precision, "flash_attention_2" if flash else "sdpa")
    return DeviceChoice(device, "bf16" if cpu_has_native_bf16() else "fp32", "sdpa")


def precision_warning(precision: str, device: str = "cpu") -> str | None:
    """A one-line warning when ``precision`` would be slow on ``device``, else None."""
    if not device.startswith("cpu") or precision == "fp32":
        return None
    if precision == "fp16":
        return (
            "train.precision fp16 on CPU: fp16 matmul is emulated on this CPU and can be "
            "hundreds of times slower than fp32; use bf16 (with native bf16) or fp32"
        )
    if precision == "bf16" and not cpu_has_native_bf16():
        return (
            "train.precision bf16: this CPU has no native bf16 matmul (no AVX512_BF16/AMX), "
            "so bf16 is emulated and much slower than fp32; use fp32 here"
        )
    return None


def enable_cpu_fp16(accelerator: Any, init_scale: float) -> None:
    """fp16 autocast and loss scaling on CPU, as Accelerate sets them up on GPUs.

    Accelerate turns neither on for a CPU device, so ``precision: fp16`` would silently train
    in fp32. Call before ``prepare``: ``accelerator.autocast()`` and the prepared model's
    forward then run under torch's CPU fp16 autocast, and ``backward``, ``clip_grad_norm_``
    and the prepared optimizer use a CPU ``GradScaler`` (overflow steps are skipped).
    """
    accelerator.native_amp = True
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)


def compile_model(model: nn.Module) -> tuple[nn.Module, str]:
    """``torch.compile`` in place; returns ``(model, message)``. Never raises for compile errors.

    Compiles each repeated transformer block (regional compilation: one graph reused by every
    layer, so it compiles fast and also covers code that calls the decoder directly, like the
    chunked loss); falls back to compiling the whole module. Modules are compiled in place so
    parameter names (and so checkpoints) do not change. Errors at the first step fall back to
    eager execution (``torch._dynamo.config.suppress_errors``) with a logged warning.
    """
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    blocks = _repeated_blocks(model)
    try:
        for block in blocks or [model]:
            block.compile()
    except Exception as exc:  # any backend/platform problem: train uncompiled
        return model, f"torch.compile failed ({type(exc).__name__}: {exc}); training uncompiled"
    where = f"{len(blocks)} transformer blocks" if blocks else "the whole model"
    return model, f"torch.compile: compiling {where} (first steps are slow; falls back on errors)"


def _repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """Modules of the largest ``nn.ModuleList`` (the transformer layers), or []."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
    return list(max(lists, key=len)) if lists else []
