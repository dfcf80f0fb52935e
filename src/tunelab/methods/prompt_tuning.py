"""Soft prompt tuning through PEFT."""

from __future__ import annotations

from torch import nn

from tunelab.config import PromptTuningSettings, Task
from tunelab.methods.lora import peft_task_type


def apply_prompt_tuning(model: nn.Module, settings: PromptTuningSettings, task: Task) -> nn.Module:
    """Prepend ``num_virtual_tokens`` trainable embeddings, random or initialised from text."""
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    from_text = settings.init == "text"
    config = PromptTuningConfig(
        task_type=peft_task_type(task),
        num_virtual_tokens=settings.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT if from_text else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=settings.init_text if from_text else None,
        tokenizer_name_or_path=model.name_or_path if from_text else None,
    )
    return get_peft_model(model, config)
