"""Helpers for the training tests: small data files and run configs on the tiny models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_file

from tunelab.config import RunConfig, load_config
from tunelab.testing import corpus_lines

LABELS = ("sport", "tech", "film")


def write_text_data(path: Path, n: int = 96, seed: int = 1) -> Path:
    """Plain-text LM data with uneven line lengths."""
    with path.open("w", encoding="utf-8") as fh:
        for line in corpus_lines(n, seed):
            fh.write(json.dumps({"text": line}) + "\n")
    return path


def write_classification_data(path: Path, n: int = 96, seed: int = 2) -> Path:
    """Three-class data whose label follows the first word (learnable)."""
    with path.open("w", encoding="utf-8") as fh:
        for i, line in enumerate(corpus_lines(n, seed)):
            label = LABELS[i % 3]
            fh.write(json.dumps({"text": f"{label} {line}", "label": label}) + "\n")
    return path


def lm_config(
    model_dir: Path, data: Path, out: Path, train: dict[str, Any] | None = None, **sections: Any
) -> RunConfig:
    """A LoRA causal-LM run on the tiny Llama (no end-of-run evaluation)."""
    return load_config(lm_raw(model_dir, data, out, train, **sections))


def lm_raw(
    model_dir: Path, data: Path, out: Path, train: dict[str, Any] | None = None, **sections: Any
) -> dict[str, Any]:
    """The raw config dict of :func:`lm_config` (``data_extra`` merges into ``data``)."""
    extra = sections.pop("data_extra", {})
    return {
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "path": str(data),
            "format": "text",
            "max_length": 48,
            "cache_dir": str(out.parent / "data-cache"),
            **extra,
        },
        "method": {"name": "lora", "lora": {"r": 4}},
        "train": {"batch_size": 4, "lr": 5e-3, "report_to": [], **(train or {})},
        "eval": {"at_end": False},
        "output": {"dir": str(out)},
        **sections,
    }


def cls_config(
    model_dir: Path, data: Path, out: Path, train: dict[str, Any] | None = None, **sections: Any
) -> RunConfig:
    """A full fine-tuning classification run on the tiny BERT."""
    raw = {
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "path": str(data),
            "format": "classification",
            "max_length": 48,
            "cache_dir": str(out.parent / "data-cache"),
        },
        "method": {"name": "full"},
        "train": {"batch_size": 8, "lr": 2e-3, "report_to": [], **(train or {})},
        "eval": {"at_end": False},
        "output": {"dir": str(out)},
        **sections,
    }
    return load_config(raw)


def metrics(run_dir: Path, kind: str = "train") -> list[dict[str, Any]]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def checkpoint_weights(run_dir: Path, step: int) -> dict:
    return load_file(str(Path(run_dir) / "checkpoints" / f"step-{step}" / "trainable.safetensors"))


def launch_train(launcher: list[str], raw: dict[str, Any], config_path: Path):
    """Run ``tunelab train`` on ``raw`` (written to ``config_path``) under a multi-process
    launcher (torchrun, accelerate launch); one thread per process; must succeed."""
    config_path.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [sys.executable, "-m", *launcher, "-m", "tunelab.cli", "train", str(config_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def stopped_run(source: Path, step: int, target: Path) -> Path:
    """``target`` holding what a run stopped right after ``step`` leaves: the step-N
    checkpoint and the metrics of ``source`` (the later lines are truncated on resume)."""
    (target / "checkpoints").mkdir(parents=True)
    name = f"step-{step}"
    shutil.copytree(source / "checkpoints" / name, target / "checkpoints" / name)
    shutil.copy(source / "metrics.jsonl", target / "metrics.jsonl")
    return target


SHARDED_STEPS = 4  # steps of :func:`sharded_lm_raw`


def sharded_lm_raw(
    model_dir: Path, data: Path, out: Path, batch_size: int, **train_extra: Any
) -> dict[str, Any]:
    """A 4-step LoRA run with accumulation, checkpoints and validation every 2 steps, for
    comparing a multi-process (FSDP, DeepSpeed) run with one process: LoRA dropout is off,
    since each process would draw its own masks. The chunked loss must fall back."""
    train = {
        "max_steps": SHARDED_STEPS,
        "save_every": 2,
        "eval_every": 2,
        "keep_last": 10,
        "batch_size": batch_size,
        "gradient_accumulation_steps": 2,
        "lr": 1e-2,
        "loss_chunk_size": 64,
        **train_extra,
    }
    split = {"split": {"train": 0.8, "validation": 0.2, "test": 0.0}}
    raw = lm_raw(model_dir, data, out, train, data_extra=split)
    raw["method"]["lora"]["dropout"] = 0.0
    return raw


def accelerate_launch(config_file: Path, raw: dict[str, Any], config_path: Path):
    """``accelerate launch --config_file CONFIG_FILE -m tunelab.cli train`` on ``raw``."""
    launcher = ["accelerate.commands.launch", "--config_file", str(config_file)]
    return launch_train(launcher, raw, config_path)


def max_diff(a: dict, b: dict) -> float:
    """Largest absolute difference between two state dicts with the same keys."""
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)
