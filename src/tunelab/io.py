"""Crash-safe file and directory writes: a crash never leaves a half-written output.

Data is fsynced before each rename and the parent directory after it, so a power loss
cannot leave an empty file behind a completed rename. Replacing a directory takes two
renames (``path`` -> ``.path.old``, new -> ``path``); a crash between them leaves only
``.path.old``, which :func:`recover_dir` (called by the next :func:`atomic_dir` on that
path, and at the start of a run or an export) renames back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_open(path) as fh:
        fh.write(text)


@contextmanager
def atomic_open(path: str | Path) -> Iterator[TextIO]:
    """A UTF-8 text file to write (or stream) into; it replaces ``path`` only once complete.

    The data is fsynced before the rename; on error the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success rename it to ``path``.

    An existing ``path`` is replaced only after the new one is complete and on disk. On
    error the temporary directory is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        sync_tree(tmp)
        if path.exists():
            old = old_copy(path)
            shutil.rmtree(old, ignore_errors=True)  # a leftover beside a complete ``path``
            os.replace(path, old)
            fsync_dir(path.parent)
            os.replace(tmp, path)
            fsync_dir(path.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
            fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def old_copy(path: Path) -> Path:
    """Where :func:`atomic_dir` keeps the previous ``path`` while it swaps in the new one."""
    return path.with_name(f".{path.name}.old")


def recover_dir(path: str | Path) -> bool:
    """Put back ``path`` from ``.path.old`` when a replace crashed between its renames."""
    path = Path(path)
    old = old_copy(path)
    if path.exists() or not old.is_dir():
        return False
    try:
        os.replace(old, path)
    except OSError:  # another process of the same run recovered it first
        return path.exists()
    fsync_dir(path.parent)
    return True


def sync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (and ``root`` itself)."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(Path(folder))


def fsync_dir(path: Path) -> None:
    """fsync a directory so renames in it are on disk (a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
