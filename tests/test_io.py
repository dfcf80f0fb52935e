"""Crash-safe writes: fsync before the rename, recovery after a crash between renames,
and metrics.jsonl truncation that survives a half-written last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.errors import TunelabError
from tunelab.io import atomic_dir, atomic_write_text
from tunelab.train.monitor import truncate_metrics

# replace ``out`` with new content, killed (os._exit) right after the first rename
CRASH_BETWEEN_RENAMES = """
import os, sys
from pathlib import Path
from tunelab.io import atomic_dir
real = os.replace
def replace(src, dst):
    real(src, dst)
    if str(dst).endswith(".old"):
        os._exit(9)
os.replace = replace
with atomic_dir(Path(sys.argv[1])) as tmp:
    (tmp / "weights.txt").write_text("new")
"""


def write_dir(path: Path, text: str) -> None:
    with atomic_dir(path) as tmp:
        (tmp / "weights.txt").write_text(text, encoding="utf-8")


def crash_while_replacing(path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CRASH_BETWEEN_RENAMES, str(path)], timeout=120)
    assert done.returncode == 9
    assert not path.exists() and (path.parent / f".{path.name}.old").is_dir()


def test_a_crash_between_the_renames_loses_nothing(tmp_path):
    out = tmp_path / "model"
    write_dir(out, "old")
    crash_while_replacing(out)
    # the next write that fails still leaves the previous complete copy in place
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "weights.txt").write_text("half", encoding="utf-8")
        raise RuntimeError("crash in the middle of a write")
    assert (out / "weights.txt").read_text(encoding="utf-8") == "old"
    write_dir(out, "newer")
    assert (out / "weights.txt").read_text(encoding="utf-8") == "newer"
    assert not (tmp_path / ".model.old").exists()


def test_an_export_or_run_after_the_crash_finds_the_model(tmp_path):
    from tunelab.export import artifact_dir

    model = tmp_path / "run" / "model"
    write_dir(model, "trained")
    (model / "tunelab_method.json").write_text("{}", encoding="utf-8")
    crash_while_replacing(model)
    assert artifact_dir(tmp_path / "run") == model
    assert (model / "weights.txt").read_text(encoding="utf-8") == "trained"
    from tunelab.io import recover_dir

    assert recover_dir(model) is False  # nothing left to recover


def _fsynced(monkeypatch) -> list[str]:
    """Record the path of every fsync'ed file descriptor (the fsync still happens)."""
    seen: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_atomic_dir_fsyncs_files_and_directories(tmp_path, monkeypatch):
    write_dir(tmp_path / "model", "v1")
    seen = _fsynced(monkeypatch)
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.bin").write_bytes(b"a")
        (tmp / "weights.txt").write_text("v2", encoding="utf-8")
        staged = tmp
    names = {Path(p).name for p in seen}
    assert {"a.bin", "weights.txt", "sub", staged.name} <= names  # data before the rename
    assert seen.count(str(tmp_path)) >= 2  # the parent after each rename
    seen.clear()
    atomic_write_text(tmp_path / "summary.json", "{}")
    assert str(tmp_path) in seen


def test_truncate_metrics_survives_a_half_written_last_line(tmp_path):
    lines = [json.dumps({"type": "train", "step": s, "loss": 1.0}) for s in (1, 2, 3)]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(lines) + '\n{"type": "train", "st', encoding="utf-8")
    truncate_metrics(tmp_path, 2)
    assert path.read_text(encoding="utf-8") == lines[0] + "\n" + lines[1] + "\n"
    path.write_bytes(b'{"type": "train", "step": 1}\n\xff\xfe garbage\n{"step": 2}\n')
    with pytest.raises(TunelabError, match=r"metrics\.jsonl:2: not a metrics record"):
        truncate_metrics(tmp_path, 5)
