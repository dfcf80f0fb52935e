"""Efficiency: inference latency percentiles, sizes on disk, parameters, training cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

if TYPE_CHECKING:
    from tunelab.evaluate.registry import ScoringContext


class LatencyMeter:
    """Per-batch wall times turned into per-example and per-generated-token latencies.

    Inference is batched, so an example's latency is its batch's time divided by the batch
    size (and a token's, the batch time divided by the tokens the batch generated).
    """

    def __init__(self) -> None:
        self.per_example: list[float] = []
        self.per_token: list[float] = []

    def add(self, seconds: float, examples: int, generated_tokens: int | None = None) -> None:
        self.per_example += [seconds / examples] * examples
        if generated_tokens:
            self.per_token.append(seconds / generated_tokens)

    def compute(self) -> dict[str, float]:
        """latency_p50_ms / latency_p95_ms per example (and per generated token)."""
        out: dict[str, float] = {}
        for name, values in (("", self.per_example), ("_per_token", self.per_token)):
            if values:
                p50, p95 = np.percentile(values, [50, 95])
                out[f"latency{name}_p50_ms"] = float(p50) * 1000
                out[f"latency{name}_p95_ms"] = float(p95) * 1000
        return out


def dir_size_mb(path: str | Path | None) -> float | None:
    """Total size of the files under ``path`` in MiB (None when it is not a local directory)."""
    if path is None or not Path(path).is_dir():
        return None
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """trainable_params and total_params of ``model``."""
    params = list(model.parameters())
    return {
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "total_params": sum(p.numel() for p in params),
    }


def read_train_summary(run_dir: str | Path) -> dict[str, Any]:
    """``train_summary.json`` of a run, or {} when it does not exist."""
    path = Path(run_dir) / "train_summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def efficiency_metrics(
    latency: LatencyMeter,
    model: nn.Module,
    base_model_dir: str | Path | None,
    run_dir: str | Path | None,
) -> dict[str, Any]:
    """Latency, base model and artifact size (MiB), parameters, training wall time and tokens/s.

    ``run_dir`` is None for an untrained base model (no artifact, no training cost).
    """
    summary = read_train_summary(run_dir) if run_dir is not None else {}
    out: dict[str, Any] = {**latency.compute(), **parameter_counts(model)}
    # a loaded artifact has requires_grad off: the count made while training is the true one
    out["trainable_params"] = summary.get("trainable_params") or out["trainable_params"] or None
    out["model_size_mb"] = dir_size_mb(base_model_dir)
    out["artifact_size_mb"] = dir_size_mb(Path(run_dir) / "model") if run_dir else None
    out["train_wall_time_s"] = summary.get("wall_time_s")
    out["train_tokens_per_s"] = summary.get("tokens_per_s")
    return out


class EfficiencyScorer:
    """The registry's efficiency "scorer": everything is read at the end of the evaluation."""

    def __init__(self, ctx: ScoringContext) -> None:
        self.ctx = ctx

    def compute(self) -> dict[str, Any]:
        from tunelab.paths import resolve_path

        ctx = self.ctx
        base_dir = resolve_path(ctx.cfg.model.name_or_path)
        return efficiency_metrics(ctx.latency, ctx.model, base_dir, ctx.run_dir)
