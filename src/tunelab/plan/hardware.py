"""What the planner knows about the machine: the device, its free memory, the precisions it
runs fast, its matmul speed and the memory a fresh training process takes before any model."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tunelab.errors import TunelabError

_BASE_SCRIPT = """
import json, sys
import accelerate, datasets, peft, torch, transformers
import tunelab.train.run, tunelab.data
from tunelab.config import ModelConfig
from tunelab.models import load_tokenizer
load_tokenizer(ModelConfig.model_validate_json(sys.argv[1]))
if torch.cuda.is_available():
    torch.zeros(1, device="cuda")
    free, total = torch.cuda.mem_get_info()
    print(json.dumps({"cuda_context_mb": (total - free) / 2**20}))
"""


@dataclass(frozen=True)
class Hardware:
    """The device a run trains on and what the planner measured about it."""

    device: str  # "cpu" | "cuda"
    name: str
    total_mb: float
    free_mb: float
    precisions: tuple[str, ...]  # fast on this device, fp32 first
    gflops: dict[str, float]  # measured matmul GFLOP/s per precision
    allocator: str = "system"  # what `tunelab train` runs on (tunelab.allocator)


def detect_hardware() -> Hardware:
    """The CUDA device when one is visible, else the CPU (RAM from /proc/meminfo)."""
    import torch

    from tunelab.allocator import training_allocator
    from tunelab.train.precision import cpu_has_native_bf16, matmul_gflops

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        precisions = (
            ("fp32", "bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
        )
        gflops = {p: cuda_gflops(p) for p in precisions}
        return Hardware(
            "cuda", torch.cuda.get_device_name(), total / 2**20, free / 2**20, precisions, gflops,
            training_allocator(os.environ),
        )  # fmt: skip
    info = meminfo()
    precisions = ("fp32", "bf16") if cpu_has_native_bf16() else ("fp32",)
    gflops = {"fp32": matmul_gflops(torch.float32)}
    if "bf16" in precisions:
        gflops["bf16"] = matmul_gflops(torch.bfloat16)
    return Hardware(
        "cpu", f"CPU ({os.cpu_count()} cores)", info.get("MemTotal", 0.0),
        info.get("MemAvailable", 0.0), precisions, gflops, training_allocator(os.environ),
    )  # fmt: skip


def cuda_gflops(precision: str, size: int = 4096, repeats: int = 10) -> float:
    """Measured GFLOP/s of a ``size``^3 matmul on the GPU in ``precision``."""
    import time

    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a = torch.randn(size, size, device="cuda", dtype=dtype)
    b = torch.randn(size, size, device="cuda", dtype=dtype)
    a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def meminfo() -> dict[str, float]:
    """``/proc/meminfo`` in MB (empty where it does not exist)."""
    path = Path("/proc/meminfo")
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) / 1024
    return out


@lru_cache(maxsize=8)
def runtime_base_mb(model_json: str) -> dict[str, float]:
    """Peak RSS (and CUDA context) of a fresh process that imports the training stack and
    loads the tokenizer: what every training process pays before its model (measured from a
    small launcher, :mod:`tunelab.plan.measure`)."""
    import tempfile

    from tunelab.plan.measure import run_measured

    with tempfile.TemporaryDirectory(prefix="tunelab-base-") as tmp:
        log = Path(tmp) / "base.log"
        command = [sys.executable, "-c", _BASE_SCRIPT, model_json]
        code, peak_mb = run_measured(command, log, {**os.environ, "HF_HUB_OFFLINE": "1"})
        lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    if code != 0:
        tail = lines[-1] if lines else "no output"
        raise TunelabError(f"measuring the training process's base memory failed: {tail}")
    values = {"rss_mb": peak_mb}
    for line in lines:
        if line.startswith('{"cuda_context_mb"'):
            values.update(json.loads(line))
    return values
