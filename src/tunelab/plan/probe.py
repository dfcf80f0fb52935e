"""``tunelab plan --probe``: a few real training steps of each method at small micro-batches,
each method in a fresh process (like a training run), to fit step time and check memory.

Per method (at the config's precision, checkpointing and loss chunking, on the longest train
example): the median step at micro-batch 1 and 2 gives ``t(m) = a + m * per_example``; every
row of that method then takes ``a`` plus ``per_example`` scaled by its FLOPs (precision by the
measured matmul speeds). The process's peak (RSS on CPU, allocated + CUDA context on GPU) at
micro-batch 2 rescales that method's estimated tensor memory (see docs/planning.md).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from tunelab.config import RunConfig
from tunelab.errors import TunelabError
from tunelab.plan.estimate import process_peak_mb, tensor_parts
from tunelab.plan.measure import run_measured
from tunelab.plan.rows import Candidate, Plan

PROBE_MICROS = (1, 2)
PROBE_STEPS = 2


def probe_candidates(
    cfg: RunConfig, plan: Plan, note: Any, batch: dict[str, Any], labels: list[str] | None
) -> None:
    """Probe every candidate of ``plan``; sets ``candidate.probe`` and ``plan.probe_measured``."""
    for candidate in plan.candidates:
        note(f"probing {candidate.label}")
        result, peak_mb = run_probe(cfg, candidate, batch, labels)
        seconds = result["seconds"]
        t1, t2 = seconds["1"], seconds["2"]
        seq = len(batch["input_ids"][0])
        candidate.probe = {
            "a": max(0.0, 2 * t1 - t2),
            "per_reference": max(t2 - t1, t1 / 2),
            "tokens": seq,
            "seq": seq,
            "precision": cfg.train.precision,
            "key": probe_key(cfg),
        }
        if plan.hardware.device == "cuda":
            peak_mb = plan.base_mb + result.get("cuda_peak_mb", 0.0)
        plan.probe_measured[candidate.label] = peak_mb


def probe_key(cfg: RunConfig) -> tuple[str, bool, int]:
    """The traced configuration the probe runs: the config's precision, checkpointing, chunk."""
    chunk = (cfg.train.loss_chunk_size or 0) if cfg.task == "causal_lm" else 0
    return (cfg.train.precision, cfg.model.gradient_checkpointing, chunk)


def calibration(plan: Plan, candidate: Candidate) -> float:
    """measured / estimated tensor memory at the probe's micro-batch (1.0 without a probe)."""
    measured = plan.probe_measured.get(candidate.label)
    key = candidate.probe["key"] if candidate.probe else None
    trace = candidate.traces.get(key) if key else None
    if measured is None or trace is None:
        return 1.0
    held, transient = tensor_parts(
        trace, PROBE_MICROS[-1], plan.data.loss_tokens, key[2], candidate.shape.vocab
    )
    hw = plan.hardware
    estimated = process_peak_mb(held, transient, plan.base_mb, hw.device, hw.allocator)
    estimated -= plan.base_mb
    return min(2.0, max(0.5, (measured - plan.base_mb) / max(estimated, 1e-6)))


def run_probe(
    cfg: RunConfig, candidate: Candidate, batch: dict[str, Any], labels: list[str] | None
) -> tuple[dict[str, Any], float]:
    """One fresh probe process for ``candidate``: its JSON result and its peak RSS in MB."""
    config = cfg.model_dump(mode="json")
    config["method"] = candidate.method
    spec = {
        "config": config,
        "label_names": labels,
        "batch": {k: v.tolist() for k, v in batch.items()},
        "micros": list(PROBE_MICROS),
        "steps": PROBE_STEPS,
    }
    with tempfile.TemporaryDirectory(prefix="tunelab-probe-") as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        out_path = Path(tmp) / "out.txt"
        command = [sys.executable, "-m", "tunelab.plan.probe_worker", str(path)]
        returncode, peak_mb = run_measured(command, out_path, {**os.environ, "HF_HUB_OFFLINE": "1"})
        lines = out_path.read_text(encoding="utf-8").splitlines()
    result = next((json.loads(x) for x in reversed(lines) if x.startswith('{"seconds"')), None)
    if returncode != 0 or result is None:
        tail = lines[-1] if lines else "no output"
        raise TunelabError(f"--probe of {candidate.label} failed: {tail}")
    return result, peak_mb
