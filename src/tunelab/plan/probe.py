"""``tunelab plan --probe``: a few real training steps of each method at small micro-batches,
each method in a fresh process (like a training run), to fit step time and check memory.

Per method (at the config's precision, checkpointing and loss chunking, on the longest train
example): the median step at micro-batch 1 and 2 gives ``t(m) = a + m * per_example``; every
row of that method then takes ``a`` plus ``per_example`` scaled by its FLOPs (precision by the
measured matmul speeds). The probe process's peak (RSS on CPU, allocated + CUDA context on GPU)
is reported beside the plan (``probe_peak_mb``) as a check; it does not rescale the memory
estimate, which was closer to the measured training peak without it (docs/planning.md).
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
from tunelab.plan.measure import run_measured
from tunelab.plan.rows import Candidate, Plan

PROBE_MICROS = (1, 2)
PROBE_STEPS = 3


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
        }
        if plan.hardware.device == "cuda":
            peak_mb = plan.base_mb + result.get("cuda_peak_mb", 0.0)
        plan.probe_measured[candidate.label] = peak_mb


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
