"""A fresh ``tunelab train`` process, measured: its peak RSS (``ru_maxrss`` from a small
launcher, what ``/usr/bin/time -v`` reports; ``tunelab.plan.measure``, under the allocator the
``tunelab`` command restarts itself with), its summary and its training records."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from tunelab.plan.measure import run_measured


def train_measured(cfg: dict[str, Any], work: Path) -> tuple[float, dict, list[dict]]:
    """Train ``cfg`` (a config dict; written to ``WORK/run.yaml``, log in ``WORK/train.log``):
    peak RSS in MB, ``train_summary.json`` and the ``train`` rows of ``metrics.jsonl``.
    Raises RuntimeError with the log's last line when training fails."""
    out = Path(cfg["output"]["dir"])
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    command = [sys.executable, "-m", "tunelab.cli", "train", str(path), "--no-resume"]
    log = work / "train.log"
    code, peak_mb = run_measured(command, log, {**os.environ, "HF_HUB_OFFLINE": "1"})
    if code != 0:
        raise RuntimeError(f"training failed: {log.read_text().strip().splitlines()[-1:]}")
    summary = json.loads((out / "train_summary.json").read_text())
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return peak_mb, summary, [r for r in records if r.get("type") == "train"]
