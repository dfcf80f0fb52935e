"""Every example config validates, and the bundled data files it names exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.config import load_config

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GENERATED = ROOT / "examples" / "data" / "generated"  # built by scripts/build_example_data.py


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_validates(path):
    cfg = load_config(path)
    specs = []
    for data in [cfg.for_task(name).data for name in cfg.task_names] or [cfg.data]:
        specs += [data.path] if isinstance(data.path, str) else data.path
        specs += [s for s in (data.validation_path, data.test_path) if s]
    for spec in specs:
        local = ROOT / spec
        if spec.startswith("pkg://") or local.is_relative_to(GENERATED):
            continue
        assert local.exists(), f"{path.name}: {spec} does not exist"
