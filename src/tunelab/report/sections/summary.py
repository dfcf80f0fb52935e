"""The run at a glance: model, method, parameters, data sizes, time, memory, artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.modalities.registry import throughput_unit
from tunelab.report.page import Page
from tunelab.report.rundata import RunData


def dir_size_mb(path: Path) -> float | None:
    """Total size of the files under ``path`` in MiB (None when it is not a directory)."""
    if not path.is_dir():
        return None
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def status(run: RunData) -> str:
    """running / finished (why it stopped) / not finished."""
    if run.live:
        return "training (live)"
    if run.summary:
        return f"finished ({run.summary.get('stop_reason', 'completed')})"
    if run.metrics:
        return (
            "not finished (no train_summary.json yet: still training, or stopped; "
            "tunelab train CONFIG resumes a stopped run)"
        )
    return "not started (no metrics yet)"


def method_text(run: RunData) -> str | None:
    """``lora (r=16, alpha=32, ...)`` from the config's method block."""
    method = (run.config or {}).get("method") or {}
    name = method.get("name")
    if not name:
        return None
    settings = method.get(name)
    if isinstance(settings, dict) and settings:
        shown = ", ".join(f"{k}={v}" for k, v in list(settings.items())[:6])
        return f"{name} ({shown})"
    return str(name)


def summary_rows(run: RunData) -> list[tuple[str, Any]]:
    """(label, value) pairs of the summary table."""
    s = run.summary or {}
    last = run.train_rows()[-1] if run.train_rows() else {}
    trainable, total = s.get("trainable_params"), s.get("total_params")
    params = None
    if trainable is not None and total:
        params = f"{trainable:,} / {total:,} ({100 * trainable / total:.2f}%)"
    rows_by_split = (run.data_report or {}).get("rows") or {}
    data = ", ".join(f"{k} {v:,}" for k, v in rows_by_split.items()) or None
    best = None
    if s.get("best_metric") is not None:
        best = f"{s['best_metric_name']} {s['best_metric']:.4f} at step {s.get('best_step')}"
    memory = s.get("peak_memory_mb") or last.get("memory_mb")
    unit = s.get("throughput_unit") or throughput_unit(run.setting("data", "format"))
    model_dir = run.path / "model"
    size = dir_size_mb(model_dir)
    artifact = f"{model_dir} ({size:.1f} MiB)" if size is not None else "not written yet"
    wall = s.get("wall_time_s")
    return [
        ("status", status(run)),
        ("model", run.setting("model", "name_or_path")),
        ("task", run.task),
        ("method", method_text(run)),
        ("trainable / total parameters", params),
        ("data (rows per split)", data),
        ("data path", run.setting("data", "path")),
        ("steps", s.get("steps", last.get("step"))),
        ("training time", f"{wall:.1f} s" if wall is not None else None),
        (f"train {unit}/s", s.get("tokens_per_s", last.get("tokens_per_s"))),
        ("peak memory", f"{memory:,.0f} MB" if memory else None),
        ("precision", s.get("precision") or run.setting("train", "precision")),
        ("best validation", best),
        ("artifact", artifact),
        ("run directory", str(run.path)),
    ]


def render(run: RunData, page: Page) -> str:
    rows = [(label, value) for label, value in summary_rows(run) if value is not None]
    return page.table(["", "value"], rows, text_columns=2, name="summary")
