"""The sweep's table: one row per run (its settings, status, metrics and costs), written as
``sweep.json`` and ``sweep.csv`` in the sweep directory."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from tunelab.evaluate.efficiency import dir_size_mb
from tunelab.io import atomic_write_json, atomic_write_text

# efficiency keys of eval_results.json that have their own column (or are the summary's)
OWN_COLUMNS = {
    "latency_p50_ms", "latency_p95_ms", "trainable_params", "total_params", "model_size_mb",
    "artifact_size_mb", "train_wall_time_s", "train_tokens_per_s",
}  # fmt: skip


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when it is missing or unreadable (a run still writing it)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def run_row(
    name: str, settings: dict[str, str], run_dir: Path, status: str, metric: str
) -> dict[str, Any]:
    """One run's row: what it set, how it ended, its validation metric, its final evaluation
    (``eval.<key>``) and what it cost."""
    summary = read_json(run_dir / "train_summary.json")
    results = read_json(run_dir / "eval_results.json").get("metrics") or {}
    row: dict[str, Any] = {"run": name, **settings, "status": status}
    row |= {"metric": metric, "best_metric": summary.get("best_metric"),
            "best_step": summary.get("best_step"), "steps": summary.get("steps")}  # fmt: skip
    for key, value in results.items():
        if (
            key not in OWN_COLUMNS
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            row[f"eval.{key}"] = value
    row |= {
        "trainable_params": summary.get("trainable_params"),
        "total_params": summary.get("total_params"),
        "artifact_mb": dir_size_mb(run_dir / "model"),
        "train_time_s": summary.get("wall_time_s"),
        "peak_memory_mb": summary.get("peak_memory_mb"),
        "latency_p50_ms": results.get("latency_p50_ms"),
        "latency_p95_ms": results.get("latency_p95_ms"),
        "run_dir": str(run_dir),
    }
    return row


def write_table(sweep_dir: Path, header: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """``sweep.json`` (``header`` plus the rows) and ``sweep.csv`` (the rows), atomically."""
    atomic_write_json(sweep_dir / "sweep.json", {**header, "runs": rows})
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(sweep_dir / "sweep.csv", buffer.getvalue())
