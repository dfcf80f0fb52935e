"""Precision helpers: native-bf16 detection, warnings for slow CPU precisions, compile fallback."""

from __future__ import annotations

import torch

from tunelab.train.precision import (
    compile_model,
    cpu_flags,
    cpu_has_native_bf16,
    matmul_gflops,
    precision_warning,
    recommend,
)


def test_bf16_detection_is_a_bool_matching_the_cpu_flags() -> None:
    native = cpu_has_native_bf16()
    assert isinstance(native, bool)
    flags = cpu_flags()
    if flags:
        assert native == bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    assert recommend("cpu").precision == ("bf16" if native else "fp32")
    assert recommend("cpu").attn_implementation == "sdpa"


def test_fp16_on_cpu_warns_and_fp32_does_not() -> None:
    warning = precision_warning("fp16", "cpu")
    assert warning is not None and "fp16" in warning and "slower" in warning
    assert precision_warning("fp32", "cpu") is None
    assert precision_warning("fp16", "cuda") is None
    bf16 = precision_warning("bf16", "cpu")
    assert (bf16 is None) == cpu_has_native_bf16()


def test_matmul_benchmark_measures_a_finite_positive_throughput() -> None:
    gflops = matmul_gflops(torch.float32, size=128, seconds=0.05)
    assert 0 < gflops < float("inf")


def test_compile_model_compiles_repeated_blocks_in_place() -> None:
    model = torch.nn.Sequential(
        torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(3)]), torch.nn.Linear(4, 2)
    )
    names = [n for n, _ in model.named_parameters()]
    out, message = compile_model(model)
    assert out is model
    assert "3 transformer blocks" in message
    assert [n for n, _ in model.named_parameters()] == names
