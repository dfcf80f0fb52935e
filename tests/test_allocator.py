"""The tunelab command restarts itself under tcmalloc (where installed) and records it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from train_helpers import write_classification_data
from tunelab.allocator import find_allocator, launch_env, training_allocator
from tunelab.errors import TunelabError


def test_auto_finds_the_first_library_in_preference_order(tmp_path):
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    assert find_allocator("auto", (str(tmp_path),)) == tmp_path / "libjemalloc.so.2"
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    assert find_allocator("auto", (str(tmp_path),)) == tmp_path / "libtcmalloc_minimal.so.4"
    assert find_allocator("auto", (str(tmp_path / "none"),)) is None
    assert find_allocator("system") is None


def test_a_missing_library_path_is_a_one_line_error(tmp_path):
    with pytest.raises(TunelabError, match=r"TUNELAB_ALLOCATOR=.*no such file; set it to auto"):
        find_allocator(str(tmp_path / "libnope.so"))


def test_launch_env_prepends_the_library_once(tmp_path):
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"")
    env = launch_env({"TUNELAB_ALLOCATOR": str(library), "LD_PRELOAD": "/x/libother.so"})
    assert env is not None and env["LD_PRELOAD"] == f"{library}:/x/libother.so"
    assert launch_env(env) is None  # the restarted process does not restart again
    assert launch_env({"TUNELAB_ALLOCATOR": str(library), "LD_PRELOAD": str(library)}) is None
    assert launch_env({"TUNELAB_ALLOCATOR": "system"}) is None


def test_training_allocator_names_what_a_restarted_train_runs_on(tmp_path):
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"")
    assert training_allocator({"TUNELAB_ALLOCATOR": str(library)}) == "jemalloc"
    assert training_allocator({"TUNELAB_ALLOCATOR": "system"}) == "system"
    restarted = launch_env({"TUNELAB_ALLOCATOR": str(library)})
    assert restarted is not None and training_allocator(restarted) == "jemalloc"


def _train(tmp_path: Path, model_dir: Path, name: str, **env: str) -> dict:
    data = write_classification_data(tmp_path / "train.jsonl", n=16)
    raw = {
        "model": {"name_or_path": str(model_dir)},
        "data": {"path": str(data), "format": "classification", "max_length": 16},
        "method": {"name": "bitfit"},
        "train": {"max_steps": 1, "batch_size": 4, "report_to": []},
        "eval": {"at_end": False},
        "output": {"dir": str(tmp_path / name)},
    }
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(raw))
    exe = Path(sys.executable).parent / "tunelab"
    done = subprocess.run(
        [str(exe), "train", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((tmp_path / name / "train_summary.json").read_text())


def test_the_tunelab_command_trains_under_tcmalloc_unless_told_not_to(tmp_path, tiny_bert_dir):
    found = find_allocator("auto")
    assert found is not None and found.name == "libtcmalloc_minimal.so.4", (
        f"found {found}: install Debian's libtcmalloc-minimal4 (scripts/install.sh does)"
    )
    assert _train(tmp_path, tiny_bert_dir, "auto")["allocator"] == "tcmalloc"
    summary = _train(tmp_path, tiny_bert_dir, "system", TUNELAB_ALLOCATOR="system")
    assert summary["allocator"] == "system"
