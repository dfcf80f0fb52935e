"""Helpers for the data-pipeline tests: write small files, build configs, run prepare_data."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from tunelab.config import RunConfig, load_config
from tunelab.data import PreparedData, prepare_data


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Write one JSON value per line."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@functools.cache
def tokenizer(path: Path) -> Any:
    """The tokenizer saved at ``path``, loaded once per session."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def make_cfg(tmp_path: Path, tokenizer_dir: Path, **data: Any) -> RunConfig:
    """A run config with a cache and run dir inside ``tmp_path``."""
    data.setdefault("cache_dir", str(tmp_path / "cache"))
    raw = {
        "model": {"name_or_path": str(tokenizer_dir)},
        "data": data,
        "output": {"dir": str(tmp_path / "run")},
    }
    return load_config(raw)


def prepare(tmp_path: Path, tokenizer_dir: Path, **data: Any) -> PreparedData:
    """prepare_data on a config built from ``data`` keys, with the session tokenizer."""
    cfg = make_cfg(tmp_path, tokenizer_dir, **data)
    return prepare_data(cfg, tokenizer(tokenizer_dir))


def classification_rows(n_per_label: int, labels: tuple[str, ...] = ("a", "b", "c")) -> list[dict]:
    """Distinct rows: ``n_per_label`` per label."""
    return [
        {"text": f"example number {i} about {label}", "label": label}
        for label in labels
        for i in range(n_per_label)
    ]
