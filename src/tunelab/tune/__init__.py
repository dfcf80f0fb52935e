"""Hyperparameter search (``tunelab tune``, Optuna from the ``tune`` extra, imported lazily)."""

from __future__ import annotations

from tunelab.lazy_exports import lazy_getattr

_EXPORTS = {
    "tune": "tunelab.tune.study",
    "TuneResult": "tunelab.tune.study",
    "parse_space": "tunelab.tune.space",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
