"""What the doctor reads from a run directory: metrics, summary, config and data report."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunelab.errors import TunelabError

RUN_FILES = ("metrics.jsonl", "config.yaml", "train_summary.json")


@dataclass
class RunRecord:
    """A run's files, parsed. Rows keep every field (other tools may add some, e.g. ``stage``)."""

    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    data_report: dict[str, Any] | None = None
    train: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # adjust, rollback, error

    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    def train_setting(self, key: str, default: Any = None) -> Any:
        return self.section("train").get(key, default)

    @property
    def method(self) -> str:
        return str(self.section("method").get("name", "lora"))

    @property
    def task(self) -> str:
        fmt = self.section("data").get("format")
        return self.section("model").get("task") or (
            "classification" if fmt == "classification" else "causal_lm"
        )

    def losses(self) -> list[tuple[int, float]]:
        """``(step, loss)`` of every logged train step."""
        return [(int(r["step"]), float(r["loss"])) for r in self.train if "loss" in r]

    def finite_losses(self) -> list[tuple[int, float]]:
        return [(s, v) for s, v in self.losses() if math.isfinite(v)]

    def grad_norms(self) -> list[tuple[int, float]]:
        return [(int(r["step"]), float(r["grad_norm"])) for r in self.train if "grad_norm" in r]

    def errors(self, kind: str | None = None) -> list[dict[str, Any]]:
        rows = [e for e in self.events if e.get("type") == "error"]
        return [e for e in rows if kind is None or e.get("error") == kind]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise TunelabError(f"{path}: not valid JSON; was it written by `tunelab train`?") from None


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl``; a half-written last line (a crash) is ignored."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if number == len(lines):
                break
            raise TunelabError(f"{path}:{number}: not a metrics record") from None
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def load_run(run_dir: Path) -> RunRecord:
    """Read ``run_dir``; a directory that holds none of a run's files is a one-line error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TunelabError(f"{run_dir}: no such directory; give a run's output.dir")
    if not any((run_dir / name).is_file() for name in RUN_FILES):
        raise TunelabError(
            f"{run_dir} is not a tunelab run (none of {', '.join(RUN_FILES)}); give the "
            "output.dir of a `tunelab train` run"
        )
    config_path = run_dir / "config.yaml"
    try:
        config = (
            yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        )
    except yaml.YAMLError as exc:
        raise TunelabError(f"{config_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    rows = _read_metrics(run_dir / "metrics.jsonl")
    return RunRecord(
        run_dir=run_dir,
        config=config if isinstance(config, dict) else {},
        summary=_read_json(run_dir / "train_summary.json"),
        data_report=_read_json(run_dir / "data_report.json"),
        train=[r for r in rows if r.get("type") == "train"],
        evals=[r for r in rows if r.get("type") == "eval"],
        events=[r for r in rows if r.get("type") not in ("train", "eval")],
    )
