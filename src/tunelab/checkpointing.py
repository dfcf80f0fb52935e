"""Gradient (activation) checkpointing of a Transformers model, non-reentrant, across 5.x.

Transformers 5.2x names it ``activation_checkpointing_enable`` / ``_disable`` /
``is_activation_checkpointing`` (the ``gradient_checkpointing_*`` names are deprecated
aliases there); earlier 5.x releases (5.17, the GPU machine's) have only the
``gradient_checkpointing_*`` names.
"""

from __future__ import annotations

from typing import Any

NON_REENTRANT = {"use_reentrant": False}


def enable_checkpointing(model: Any) -> None:
    """Turn checkpointing on (non-reentrant)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(dict(NON_REENTRANT))
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(NON_REENTRANT))


def disable_checkpointing(model: Any) -> None:
    """Turn checkpointing off where it is on."""
    if not is_checkpointing(model):
        return
    if hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def is_checkpointing(model: Any) -> bool:
    """Whether checkpointing is on (False for models that cannot checkpoint)."""
    if hasattr(type(model), "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(getattr(model, "is_gradient_checkpointing", False))
