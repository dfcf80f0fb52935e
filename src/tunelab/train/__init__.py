"""Training: ``train(cfg)`` runs the whole fine-tuning run (see ``run.py`` and ``loop.py``).

The entry points load on first use, so ``tunelab.train.commands`` imports without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"TrainResult": "tunelab.train.run", "train": "tunelab.train.run"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
