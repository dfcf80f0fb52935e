"""Training: ``train(cfg)`` runs the whole fine-tuning run (see ``run.py`` and ``loop.py``;
a config with ``stages:`` runs each stage in turn, ``stages.py``).

The entry points load on first use, so ``tunelab.train.commands`` imports without torch.
"""

from __future__ import annotations

from tunelab.lazy_exports import lazy_getattr

_EXPORTS = {"TrainResult": "tunelab.train.run", "train": "tunelab.train.stages"}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
