"""Fine-tuning methods: apply one to a model, summarise and save what trains.

One module per method, each defining a :class:`~tunelab.methods.base.Method`, collected in
:mod:`tunelab.methods.registry`. LoRA, prompt tuning and prefix tuning go through PEFT (the
model becomes a ``PeftModel``); full, freeze, bitfit and adapter change the model in place.
Nothing here imports torch at import time (the config imports the registry).
"""

from __future__ import annotations

from typing import Any

from tunelab.methods.apply import apply_method
from tunelab.methods.trainable import (
    TrainableSummary,
    load_trainable_state_dict,
    print_trainable_summary,
    trainable_state_dict,
    trainable_summary,
)


def __getattr__(name: str) -> Any:
    if name in ("save_artifact", "load_artifact", "write_model_card"):
        from tunelab.methods import artifacts

        return getattr(artifacts, name)
    raise AttributeError(f"module 'tunelab.methods' has no attribute {name!r}")


__all__ = [
    "TrainableSummary",
    "apply_method",
    "load_artifact",
    "load_trainable_state_dict",
    "print_trainable_summary",
    "save_artifact",
    "trainable_state_dict",
    "trainable_summary",
    "write_model_card",
]
