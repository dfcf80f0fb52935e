"""LoRA (and rsLoRA, DoRA) through PEFT."""

from __future__ import annotations

from torch import nn

from tunelab.config import LoraSettings, Task


def peft_task_type(task: Task) -> str:
    """PEFT task type: SEQ_CLS keeps the classification head trainable (modules_to_save)."""
    return "SEQ_CLS" if task == "classification" else "CAUSAL_LM"


def apply_lora(model: nn.Module, settings: LoraSettings, task: Task) -> nn.Module:
    """Wrap ``model`` in a PeftModel with LoRA on the target modules."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type=peft_task_type(task),
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        use_rslora=settings.use_rslora,
        use_dora=settings.use_dora,
    )
    return get_peft_model(model, config)
