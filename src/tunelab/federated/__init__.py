"""Federated fine-tuning on Flower: ``tunelab federated CONFIG`` / :func:`federate`.

The same run config plus a ``federated:`` section (:mod:`tunelab.config.federated`).
Parts: ``strategies`` (the strategy registry), ``partition`` (iid / dirichlet rows per
client), ``transport`` (trainable tensors as ArrayRecords, bytes, base fingerprint),
``local`` (a client's round with tunelab's loop), ``client`` (the ClientApp), ``server``
(handshake and one round), ``checkpoints`` (round checkpoints, resume), ``runner``
(:func:`federate`, the ServerApp's work), ``engine`` (Flower settings, simulation),
``apps`` (the ServerApp/ClientApp of the deployment engine), ``commands`` (the CLI).
Flower is imported only when a run starts (extra ``federated``).
"""

from __future__ import annotations

from typing import Any


def federate(cfg: Any, resume: bool | None = None, console: Any = None) -> Any:
    """Run a federated training of ``cfg`` (see :func:`tunelab.federated.runner.federate`)."""
    from tunelab.federated.runner import federate as run

    return run(cfg, resume=resume, console=console)
