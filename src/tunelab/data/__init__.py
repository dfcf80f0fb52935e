"""The data pipeline: load, clean, split, render and tokenise a run's data (cached on disk).

The entry points load on first use, so ``tunelab.data.commands`` imports light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PreparedData": "tunelab.data.pipeline",
    "prepare_data": "tunelab.data.pipeline",
    "print_inspection": "tunelab.data.report",
    "print_report": "tunelab.data.report",
    "print_warnings": "tunelab.data.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
