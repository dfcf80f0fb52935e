"""LoRA (and rsLoRA, DoRA) through PEFT; the export merges it into the base weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.config.section import Fraction, PositiveInt, Section
from tunelab.methods.base import Artifact, save_whole
from tunelab.methods.peft_method import PeftMethod, peft_task_type

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config.section import Task


class LoraSettings(Section):
    """LoRA through PEFT."""

    r: PositiveInt = Field(default=8, description="Rank of the update matrices.")
    alpha: float = Field(default=16.0, gt=0, description="Scaling numerator (alpha / r).")
    dropout: Fraction = Field(default=0.05, description="Dropout on the LoRA input.")
    target_modules: Literal["all-linear"] | list[str] = Field(
        default="all-linear",
        description="Module names to adapt; all-linear = every linear layer except the head.",
    )
    use_rslora: bool = Field(default=False, description="Rank-stabilised scaling alpha/sqrt(r).")
    use_dora: bool = Field(default=False, description="Weight-decomposed LoRA (DoRA).")
    quantize: Literal["nf4", "int8"] | None = Field(
        default=None,
        description="QLoRA: load the frozen base through bitsandbytes in 4-bit NF4 or int8 "
        "(the adapter trains in fp32; the artifact is a plain LoRA adapter).",
    )


class Lora(PeftMethod):
    name = "lora"
    settings = LoraSettings
    description = "low-rank updates of the linear layers (PEFT; rsLoRA, DoRA); mergeable"
    plain_export = True

    def apply(self, model: nn.Module, settings: LoraSettings, task: Task) -> nn.Module:
        """Wrap ``model`` in a PeftModel with LoRA on the target modules."""
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if getattr(model, "is_quantized", False):  # QLoRA: norms in fp32, inputs keep grads
            from tunelab.checkpointing import is_checkpointing

            checkpointing = is_checkpointing(model)
            model = prepare_model_for_kbit_training(
                model, checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
            )
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

    def supports(self, task: Task, model: nn.Module) -> str | None:
        """NF4 packs weights in blocks of 64 values: every linear layer's size must divide."""
        sizes = [
            (name, module.in_features, module.out_features)
            for name, module in model.named_modules()
            if type(module).__name__ == "Linear4bit"
        ]
        odd = [name for name, n_in, n_out in sizes if n_in % 64 or n_out % 64]
        if odd:
            return (
                f"method.lora.quantize nf4: linear layer {odd[0]} has a size that is not a "
                "multiple of 64; use quantize: int8 or none for this model"
            )
        return None

    def export(self, artifact: Artifact, folder: Path, shown: Path) -> str:
        """Merge the update into the base weights (PEFT's ``merge_and_unload``)."""
        model, tokenizer = artifact.load()
        save_whole(model.merge_and_unload(), tokenizer, folder)
        return f"exported a standalone merged {self.name} model to {shown}"


def stable_targets(model: nn.Module, targets: set[str]) -> list[str]:
    """The resolved ``all-linear`` targets as a sorted list for ``adapter_config.json``.

    Short (leaf) names such as ``q_proj`` when they select exactly ``targets`` in ``model``
    (PEFT matches a name against a module path's last components), else the sorted full paths.
    """
    short = {name.rsplit(".", 1)[-1] for name in targets}
    selected = {name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in short}
    return sorted(short) if selected == targets else sorted(targets)


LORA = Lora()
