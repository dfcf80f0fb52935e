"""What the seed-comparison benchmarks share: train one config in a fresh `tunelab train`
process and read its results; mean and spread over seeds."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def train_and_read(args: list[str], out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``tunelab train ARGS`` (output in ``out``); its summary and test metrics."""
    command = [sys.executable, "-m", "tunelab.cli", "train", *args]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise SystemExit(f"tunelab train {' '.join(args)} failed ({done.returncode}):\n{tail}")
    summary = json.loads((out / "train_summary.json").read_text())
    return summary, json.loads((out / "eval_results.json").read_text())["metrics"]


def describe(values: list[float]) -> str:
    """Mean ± sample standard deviation, 3 decimals."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"
