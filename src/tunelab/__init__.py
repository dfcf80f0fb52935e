"""tunelab: fine-tune pretrained models end to end.

The Python API mirrors the CLI. Heavy modules load on first use, so ``import tunelab`` and
config validation stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from tunelab.config import RunConfig, load_config
from tunelab.errors import ConfigError, TunelabError
from tunelab.library_logs import drop_library_noise
from tunelab.methods import registry as _registry  # hands the config its methods

del _registry
drop_library_noise()  # before any library that logs it is imported

__version__ = "0.1.0"

# public name -> (module, attribute). ``tunelab.train`` and ``tunelab.evaluate`` are
# sub-packages, so their entry points are exposed as ``finetune`` and ``evaluate_run``.
_LAZY = {
    "prepare_data": ("tunelab.data", "prepare_data"),
    "finetune": ("tunelab.train", "train"),
    "federate": ("tunelab.federated", "federate"),
    "evaluate_run": ("tunelab.evaluate", "evaluate"),
    "compare_prompting": ("tunelab.evaluate", "compare_prompting"),
    "export_run": ("tunelab.export", "export_run"),
    "load": ("tunelab.inference", "load"),
    "predict": ("tunelab.inference", "predict"),
    "tune": ("tunelab.tune.study", "tune"),
    "diagnose": ("tunelab.doctor", "diagnose"),
    "write_report": ("tunelab.report", "write_report"),
    "read_attention": ("tunelab.attention.api", "attention"),
    "run_sweep": ("tunelab.sweep.runner", "sweep"),
    "serve": ("tunelab.serving.server", "serve"),
    "build_app": ("tunelab.serving.server", "build_app"),
    "make_plan": ("tunelab.plan.planner", "build_plan"),
    "resolve_auto": ("tunelab.plan.auto", "resolve_auto"),
}

__all__ = ["ConfigError", "RunConfig", "TunelabError", "load_config", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'tunelab' has no attribute {name!r}")
