"""Where the real multimodal assets live, for integration tests: missing ones fail the test
with the command that builds them (never a silent skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"
DATA = ROOT / "examples" / "data" / "generated"
HINT = "run `bash scripts/install.sh --multimodal` (or --test) to fetch and convert them"


def model_dir(name: str) -> Path:
    """examples/models/NAME, or a failed test saying how to build it."""
    path = MODELS / name
    if not (path / "config.json").is_file():
        pytest.fail(f"{path} is missing: {HINT}", pytrace=False)
    return path


def data_file(name: str) -> Path:
    """examples/data/generated/NAME (a file or folder), or a failed test saying how to build it."""
    path = DATA / name
    if not path.exists():
        pytest.fail(f"{path} is missing: {HINT}", pytrace=False)
    return path
