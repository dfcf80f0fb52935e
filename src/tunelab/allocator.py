"""The memory allocator of a tunelab process: tcmalloc (else jemalloc) where installed.

glibc's malloc keeps the activation buffers a training step frees for reuse instead of
returning them, so a process's resident memory grows to about twice what its tensors need
(the SmolLM2 chat example: 4.1 GB peak RSS with glibc, 2.0 GB with tcmalloc or jemalloc, same
losses; tcmalloc is also a little faster, jemalloc about 0.75x; see docs/performance.md). An
allocator is chosen when a process starts, so the ``tunelab`` command starts itself once more
with the library in ``LD_PRELOAD``. ``TUNELAB_ALLOCATOR`` picks: ``auto`` (the default:
tcmalloc, else jemalloc, else the system's), ``system``, or the path of a malloc library.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from tunelab.errors import TunelabError

SETTING = "TUNELAB_ALLOCATOR"
_RELAUNCHED = "TUNELAB_ALLOCATOR_RELAUNCHED"
_LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libjemalloc.so.2")
_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)


def find_allocator(setting: str, dirs: tuple[str, ...] = _DIRS) -> Path | None:
    """The malloc library ``setting`` names, or None for the system allocator."""
    if setting == "system":
        return None
    if setting != "auto":
        path = Path(setting)
        if not path.is_file():
            raise TunelabError(
                f"{SETTING}={setting}: no such file; set it to auto, system or the path of a "
                "malloc library such as /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
            )
        return path
    for name in _LIBRARIES:
        for folder in dirs:
            if (Path(folder) / name).is_file():
                return Path(folder) / name
    return None


def launch_env(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment a process should restart with to get the allocator, or None."""
    if not sys.platform.startswith("linux") or environ.get(_RELAUNCHED):
        return None
    library = find_allocator(environ.get(SETTING, "auto"))
    preload = environ.get("LD_PRELOAD", "")
    if library is None or str(library) in preload.split(":"):
        return None
    return {
        **environ,
        "LD_PRELOAD": ":".join(p for p in (str(library), preload) if p),
        _RELAUNCHED: "1",
    }


def training_allocator(environ: Mapping[str, str]) -> str:
    """The allocator a ``tunelab train`` started from ``environ`` runs on (it restarts itself
    under :func:`launch_env`): tcmalloc, jemalloc or system."""
    env = launch_env(environ) or environ
    preload = env.get("LD_PRELOAD", "") if sys.platform.startswith("linux") else ""
    for name in ("jemalloc", "tcmalloc"):
        if f"lib{name}" in preload:
            return name
    return "system"


def relaunch_with_allocator(argv: list[str]) -> None:
    """Replace this process with itself under the allocator (returns if none applies)."""
    env = launch_env(os.environ)
    script = Path(argv[0]) if argv else None
    if env is None or script is None or not script.is_file():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, str(script), *argv[1:]], env)


def active_allocator() -> str:
    """Which allocator this process runs on: jemalloc, tcmalloc or system."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    for name in ("jemalloc", "tcmalloc"):
        if f"lib{name}" in maps:
            return name
    return "system"
