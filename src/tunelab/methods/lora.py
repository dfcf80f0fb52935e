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
    peft_model = get_peft_model(model, config)
    if settings.target_modules == "all-linear":
        saved = peft_model.peft_config["default"]
        saved.target_modules = stable_targets(
            peft_model.get_base_model(), set(saved.target_modules)
        )
    return peft_model


def stable_targets(model: nn.Module, targets: set[str]) -> list[str]:
    """The resolved ``all-linear`` targets as a sorted list for ``adapter_config.json``.

    Short (leaf) names such as ``q_proj`` when they select exactly ``targets`` in ``model``
    (PEFT matches a name against a module path's last components), else the sorted full paths.
    """
    short = {name.rsplit(".", 1)[-1] for name in targets}
    selected = {name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in short}
    return sorted(short) if selected == targets else sorted(targets)
