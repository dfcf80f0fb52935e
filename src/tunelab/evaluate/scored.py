"""Which model an evaluation scored, and where its results go.

A fine-tuned run's results are ``RUN_DIR/eval_results.json`` and ``predictions.jsonl``; the
base model's (``tunelab eval CONFIG``) go to ``RUN_DIR/eval_base/``, so evaluating the base
model never replaces a run's results. Every ``eval_results.json`` names the model it scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.config import RunConfig

BASE_EVAL_DIR = "eval_base"


def results_dir(cfg: RunConfig, fine_tuned: bool) -> Path:
    """The run directory for a fine-tuned model, ``RUN_DIR/eval_base`` for the base model."""
    return cfg.run_dir if fine_tuned else cfg.run_dir / BASE_EVAL_DIR


def scored_model(cfg: RunConfig, fine_tuned: bool) -> dict[str, Any]:
    """The ``model`` block of ``eval_results.json``: kind, path and base model."""
    base = cfg.model.name_or_path
    return {
        "kind": "fine-tuned" if fine_tuned else "base",
        "path": str(cfg.run_dir / "model") if fine_tuned else base,
        "base_model": base,
        "gguf_file": cfg.model.gguf_file,
    }
