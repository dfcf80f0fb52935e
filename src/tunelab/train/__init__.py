"""Training: ``train(cfg)`` runs the whole fine-tuning run (see ``run.py`` and ``loop.py``)."""

from tunelab.train.run import TrainResult, train

__all__ = ["TrainResult", "train"]
