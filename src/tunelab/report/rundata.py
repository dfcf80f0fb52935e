"""One run directory's outputs, read leniently for the report.

Every file is optional: a run that has only started has a config and a few metric lines, a
run killed mid-write may end ``metrics.jsonl`` with half a line. What cannot be read becomes
a note shown on the page (and printed by ``tunelab report``), never an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunelab.errors import TunelabError, first_line

SAMPLE_ROWS = 50  # generation samples kept for the samples table
RUN_FILES = ("config.yaml", "metrics.jsonl", "train_summary.json", "eval_results.json")


@dataclass
class Predictions:
    """What the report needs from ``predictions.jsonl``: for classification each example's
    label, prediction and top probability; the first ``SAMPLE_ROWS`` records whole."""

    labels: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0


@dataclass
class RunData:
    """The files of one run directory (each None when absent or unreadable)."""

    path: Path
    name: str
    config: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    eval_results: dict[str, Any] | None = None
    base_results: dict[str, Any] | None = None
    predictions: Predictions | None = None
    data_report: dict[str, Any] | None = None
    prompting: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    live: bool = False  # training is still running (the report reloads itself)

    @property
    def task(self) -> str | None:
        """``classification`` or ``causal_lm`` (from the results, else the config)."""
        if self.eval_results and self.eval_results.get("task"):
            return str(self.eval_results["task"])
        cfg = self.config or {}
        task = (cfg.get("model") or {}).get("task")
        if task:
            return str(task)
        fmt = (cfg.get("data") or {}).get("format")
        if fmt:
            return "classification" if fmt == "classification" else "causal_lm"
        return None

    def train_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.metrics if r.get("type") == "train"]

    def eval_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.metrics if r.get("type") == "eval"]

    def setting(self, section: str, key: str) -> Any:
        """``config[section][key]``, or None."""
        return ((self.config or {}).get(section) or {}).get(key)


def load_run(path: str | Path, name: str | None = None) -> RunData:
    """Read a run directory; a path that is not one is a one-line error."""
    path = Path(path)
    if not path.exists():
        raise TunelabError(f"{path}: no such run directory")
    if not path.is_dir():
        raise TunelabError(f"{path}: not a directory; pass a run directory (output.dir)")
    if not any((path / f).is_file() for f in RUN_FILES):
        raise TunelabError(
            f"{path}: not a run directory (none of {', '.join(RUN_FILES)}); pass the "
            "output.dir of a run started with tunelab train"
        )
    run = RunData(path=path, name=name or path.name)
    run.config = read_yaml(path / "config.yaml", run.notes)
    run.metrics = read_metrics(path / "metrics.jsonl", run.notes)
    run.summary = read_json(path / "train_summary.json", run.notes)
    run.eval_results = read_json(path / "eval_results.json", run.notes)
    run.base_results = read_json(path / "eval_base" / "eval_results.json", run.notes)
    run.data_report = read_json(path / "data_report.json", run.notes)
    run.prompting = read_json(path / "prompting_comparison.json", run.notes)
    run.predictions = read_predictions(path / "predictions.jsonl", run.notes)
    if not run.metrics:
        run.notes.append(
            f"{path / 'metrics.jsonl'}: no metrics yet (the run has not logged a step)"
        )
    return run


def read_json(path: Path, notes: list[str]) -> dict[str, Any] | None:
    """A JSON object file, or None (absent; unreadable: with a note)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(f"{path}: unreadable JSON ({first_line(exc)}); its section is left out")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path}: expected a JSON object; its section is left out")
        return None
    return data


def read_yaml(path: Path, notes: list[str]) -> dict[str, Any] | None:
    """A YAML mapping file, or None (absent; unreadable: with a note)."""
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        notes.append(f"{path}: unreadable YAML ({first_line(exc)}); the summary is partial")
        return None
    return data if isinstance(data, dict) else None


def read_metrics(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl``; lines that are not JSON objects are skipped with a
    note (a half-written last line is what a run killed mid-write leaves)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "step" not in record:
            last = number == len(lines)
            why = (
                "incomplete last line (the run was stopped while writing it?)"
                if last
                else ("not a metrics record")
            )
            notes.append(f"{path}:{number}: {why}; skipped")
            continue
        records.append(record)
    return records


def read_predictions(path: Path, notes: list[str]) -> Predictions | None:
    """Labels, predictions and confidences (classification) and the first samples."""
    if not path.is_file():
        return None
    out = Predictions()
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    record = json.loads(line)
                except ValueError:
                    notes.append(f"{path}:{number}: not a JSON line; skipped")
                    continue
                add_prediction(out, record)
    except OSError as exc:
        notes.append(f"{path}: unreadable ({first_line(exc)})")
        return None
    return out


def add_prediction(out: Predictions, record: Any) -> None:
    """Add one ``predictions.jsonl`` record to ``out``."""
    if not isinstance(record, dict):
        return
    out.count += 1
    if len(out.samples) < SAMPLE_ROWS:
        out.samples.append(record)
    probs = record.get("probabilities")
    if isinstance(probs, dict) and probs and "label" in record:
        out.labels.append(str(record["label"]))
        out.predicted.append(str(record.get("prediction")))
        out.confidence.append(float(max(probs.values())))
