"""Two small classification tasks with different label sets, and a multi-task config on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.testing import corpus_lines

TOPICS = ("sport", "tech", "film")
MOODS = ("happy", "sad")


def write_task(path: Path, labels: tuple[str, ...], n: int, seed: int) -> Path:
    """Rows whose label is their first word (learnable), cycling through ``labels``."""
    with path.open("w", encoding="utf-8") as fh:
        for i, line in enumerate(corpus_lines(n, seed)):
            label = labels[i % len(labels)]
            fh.write(json.dumps({"text": f"{label} {line}", "label": label}) + "\n")
    return path


def two_task_raw(model_dir: Path, root: Path, train: dict[str, Any], **data: Any) -> dict[str, Any]:
    """A full fine-tuning run on the tiny BERT over ``topics`` (3 labels) and ``moods`` (2)."""

    def task(name: str, labels: tuple[str, ...], n: int, seed: int) -> dict[str, Any]:
        return {
            "name": name,
            "path": str(write_task(root / f"{name}.jsonl", labels, n, seed)),
            "format": "classification",
            "max_length": 32,
            "split": {"train": 0.75, "validation": 0.25, "test": 0.0},
        }

    return {
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "tasks": [task("topics", TOPICS, 48, 3), task("moods", MOODS, 32, 4)],
            "cache_dir": str(root / "data-cache"),
            **data,
        },
        "method": {"name": "full"},
        "train": {"batch_size": 4, "lr": 2e-3, "report_to": [], **train},
        "eval": {"at_end": False},
        "output": {"dir": str(root / "run")},
    }
