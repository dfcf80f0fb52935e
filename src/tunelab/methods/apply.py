"""Apply the configured method to a model (the registry's method, after its support check)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.methods.registry import get_method

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config import MethodConfig, Task


def apply_method(model: nn.Module, method_cfg: MethodConfig, task: Task) -> nn.Module:
    """Apply the configured method; afterwards exactly its parameters have requires_grad."""
    method = get_method(method_cfg.name)
    reason = method.supports(task, model)
    if reason:
        raise TunelabError(reason)
    return method.apply(model, method_cfg.settings, task)
