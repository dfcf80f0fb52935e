"""The data pipeline: load, clean, split, render and tokenise a run's data (cached on disk).

The entry points load on first use, so ``tunelab.data.commands`` imports light.
"""

from __future__ import annotations

from tunelab.lazy_exports import lazy_getattr

_EXPORTS = {
    "PreparedData": "tunelab.data.pipeline",
    "prepare_data": "tunelab.data.pipeline",
    "print_inspection": "tunelab.data.report",
    "print_report": "tunelab.data.report",
    "print_warnings": "tunelab.data.report",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
