"""Hide the packages the GPU machine lacks, so that a CPU run here imports what it would there.

Active only when ``TUNELAB_DEVICE_LIKE`` is ``PACKAGES_FILE:WHEELS_DIR`` (set by
``benchmarks/gpu.sh --cpu-smoke``, which puts this folder first on ``PYTHONPATH``, so every
subprocess loads it too). A top-level module is importable when a distribution that provides
it is on the machine's list (``benchmarks/h200_packages.txt``), among the carried wheels, or
needed by one of those as installed here (there, at its own version, it needs its own); every
other installed module is hidden from the path finder: ``import`` raises
``ModuleNotFoundError`` and ``importlib.util.find_spec`` returns None, as on that machine.
Versions are this machine's: only missing packages are emulated, not older ones.
"""

from __future__ import annotations

import os
import re
import sys
from importlib.machinery import PathFinder
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _allowed(packages_file: Path, wheels: Path) -> set[str]:
    lines = packages_file.read_text().splitlines()
    names = {_norm(x) for x in lines if x.strip() and not x.startswith("#")}
    names |= {_norm(w.name.split("-")[0]) for w in wheels.glob("*.whl")}
    todo = list(names)
    while todo:  # what the allowed distributions need, as installed here
        try:
            needs = requires(todo.pop()) or []
        except PackageNotFoundError:
            continue
        for need in (r for r in needs if "extra ==" not in r):
            name = _norm(re.split(r"[\s<>=!~;\[(]", need)[0])
            if name not in names:
                names.add(name)
                todo.append(name)
    return names | {"tunelab"}


class _HidingFinder:
    """The path finder, blind to the hidden top-level modules and their distributions."""

    def __init__(self, hidden: set[str], allowed: set[str]) -> None:
        self.hidden = hidden
        self.allowed = allowed

    def find_spec(self, name, path=None, target=None):
        if path is None and name in self.hidden:
            return None
        return PathFinder.find_spec(name, path, target)

    def find_distributions(self, *args, **kwargs):
        for dist in PathFinder.find_distributions(*args, **kwargs):
            if _norm(dist.metadata["Name"] or "") in self.allowed:
                yield dist

    def invalidate_caches(self) -> None:
        PathFinder.invalidate_caches()


def _install(setting: str) -> None:
    packages_file, _, wheels = setting.partition(":")
    allowed = _allowed(Path(packages_file), Path(wheels))
    hidden = {
        module
        for module, dists in packages_distributions().items()
        if not any(_norm(d) in allowed for d in dists)
    }
    finder = _HidingFinder(hidden, allowed)
    sys.meta_path[:] = [finder if f is PathFinder else f for f in sys.meta_path]


if os.environ.get("TUNELAB_DEVICE_LIKE"):
    _install(os.environ["TUNELAB_DEVICE_LIKE"])
