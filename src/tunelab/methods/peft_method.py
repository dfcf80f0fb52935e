"""What the PEFT methods (lora, prompt_tuning, prefix_tuning) share: PEFT's artifact layout.

The artifact is PEFT's own layout (``adapter_config.json`` + ``adapter_model.safetensors``),
loadable by ``peft.PeftModel.from_pretrained`` alone; the export copies it (a soft prompt or
prefix is an extra input, not a weight change, so it cannot be merged).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.methods.base import Artifact, Method

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config.section import Task

PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


def peft_task_type(task: Task) -> str | None:
    """PEFT task type: SEQ_CLS keeps the classification head trainable (modules_to_save);
    speech_to_text: none (a plain PeftModel passes Whisper's input_features through)."""
    if task == "speech_to_text":
        return None
    return "SEQ_CLS" if task == "classification" else "CAUSAL_LM"


class PeftMethod(Method):
    """A method whose model is a ``PeftModel``, saved in PEFT's layout."""

    plain_export = False  # virtual tokens: the export is the adapter (LoRA merges: overrides)

    def save(self, model: nn.Module, folder: Path, info: dict[str, Any]) -> None:
        """PEFT's ``save_pretrained``, naming the resolved base model."""
        for peft_cfg in model.peft_config.values():
            peft_cfg.base_model_name_or_path = info["base_model_resolved"]
        model.save_pretrained(folder)

    def load(self, base_model: nn.Module, folder: Path, info: dict[str, Any]) -> nn.Module:
        """``PeftModel.from_pretrained`` on ``base_model``."""
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, folder)

    def export(self, artifact: Artifact, folder: Path, shown: Path) -> str:
        """Copy the PEFT adapter and the tokenizer (virtual tokens cannot be merged)."""
        for path in artifact.dir.iterdir():
            if path.name in PEFT_FILES or path.name.startswith(("tokenizer", "chat_template")):
                shutil.copy2(path, folder / path.name)
        return (
            f"{self.name} cannot be merged into the weights (it adds virtual tokens, not a weight "
            f"change); wrote the PEFT adapter to {shown}: load it with "
            "peft.PeftModel.from_pretrained(base_model, OUT)"
        )
