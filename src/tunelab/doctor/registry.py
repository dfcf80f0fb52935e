"""The doctor's checks: each family module's ``CHECKS``, by name; :func:`register` adds one.

A check is a function ``RunRecord -> Iterable[Finding]`` that yields nothing for a healthy run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from tunelab.doctor.curves import CHECKS as CURVES
from tunelab.doctor.data_checks import CHECKS as DATA
from tunelab.doctor.finding import Finding
from tunelab.doctor.memory import CHECKS as MEMORY
from tunelab.doctor.record import RUN_FILES, RunRecord, load_run
from tunelab.doctor.speed import CHECKS as SPEED
from tunelab.doctor.stability import CHECKS as STABILITY

Check = Callable[[RunRecord], Iterable[Finding]]
CHECKS: dict[str, Check] = {}
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def register(check: Check, name: str | None = None) -> None:
    """Add ``check`` (under ``name``, default: its function name)."""
    CHECKS[name or check.__name__] = check


for _check in (*MEMORY, *STABILITY, *CURVES, *DATA, *SPEED):
    register(_check)


def diagnose(run: RunRecord | str | Path) -> list[Finding]:
    """Every registered check's findings for ``run`` (a directory or a loaded record),
    errors first.

    A staged run's directory is judged stage by stage, each against its own config (method,
    learning rate) and curves; its findings' titles name the stage.
    """
    if isinstance(run, RunRecord):
        found = _findings(run)
    else:
        from tunelab.train.stages import recorded_stages

        stages = [(n, d) for n, d in recorded_stages(Path(run)) if _has_run_files(d)]
        found = [
            replace(finding, title=f"stage {name}: {finding.title}")
            for name, folder in stages
            for finding in _findings(load_run(folder))
        ]
        if not stages:
            found = _findings(load_run(Path(run)))
    return sorted(found, key=lambda f: SEVERITY_ORDER[f.severity])


def _findings(record: RunRecord) -> list[Finding]:
    return [finding for check in CHECKS.values() for finding in check(record)]


def _has_run_files(folder: Path) -> bool:
    return any((folder / name).is_file() for name in RUN_FILES)
