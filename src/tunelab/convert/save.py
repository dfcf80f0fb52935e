"""Write a converted model directory atomically: safetensors weights plus processor files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.io import atomic_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def save_model_dir(model: PreTrainedModel, out: str | Path, *processors: Any) -> Path:
    """Save ``model`` (safetensors) and each processor's files into ``out``, replacing it whole."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for processor in processors:
            processor.save_pretrained(tmp)
    return out
