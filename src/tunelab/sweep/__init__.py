"""Method and hyper-parameter sweeps: ``--set KEY=V1,V2,...`` combinations trained one after
another, each in its own run directory, tabulated in ``sweep.json`` / ``sweep.csv``."""

from __future__ import annotations

from tunelab.lazy_exports import lazy_getattr

_EXPORTS = {
    "SweepResult": "tunelab.sweep.runner",
    "plan_sweep": "tunelab.sweep.plan",
    "sweep": "tunelab.sweep.runner",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
