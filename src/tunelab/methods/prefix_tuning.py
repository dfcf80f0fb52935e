"""Prefix tuning: through PEFT for decoders; tunelab's own prefixes for encoder classification.

PEFT passes its prefixes as ``past_key_values``, which Transformers 5's encoders (BERT) no
longer take; those get :mod:`tunelab.methods.encoder_prefix` instead, saved as trained tensors
(``tunelab_weights.safetensors``) and exported with generated code
(:mod:`tunelab.methods.encoder_prefix_export`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from tunelab.config.section import PositiveInt, Section
from tunelab.methods.base import WEIGHTS_FILE, Artifact, Method, save_whole
from tunelab.methods.peft_method import PeftMethod, peft_task_type

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config.section import Task


class PrefixTuningSettings(Section):
    """Prefix tuning through PEFT."""

    num_virtual_tokens: PositiveInt = Field(default=20, description="Prefix length.")
    reparameterize: bool = Field(
        default=False, description="Train the prefix through an MLP (PEFT prefix_projection)."
    )
    encoder_hidden_size: PositiveInt | None = Field(
        default=None, description="Hidden size of the reparameterisation MLP."
    )


class PrefixTuning(PeftMethod):
    name = "prefix_tuning"
    settings = PrefixTuningSettings
    description = "trainable key/value prefixes in every attention layer (PEFT; encoders: tunelab)"
    virtual_tokens = True
    decode_by_forward = True

    def supports(self, task: Task, model: nn.Module) -> str | None:
        """Refused for classification on a decoder that takes no past key values."""
        from tunelab.methods.encoder_prefix import is_encoder

        if task != "classification" or _takes_past_key_values(model) or is_encoder(model):
            return None
        return (
            f"method prefix_tuning: {type(model).__name__} takes no past key values, which "
            "PEFT's prefix tuning for classification needs (tunelab's own prefixes cover "
            "BERT-style encoders); use prompt_tuning or lora instead"
        )

    def apply(self, model: nn.Module, settings: PrefixTuningSettings, task: Task) -> nn.Module:
        """Prepend trainable key/value prefixes to every attention layer (optionally via an MLP)."""
        from peft import PrefixTuningConfig, get_peft_model

        if task == "classification" and not _takes_past_key_values(model):
            from tunelab.methods.encoder_prefix import apply_encoder_prefix

            return apply_encoder_prefix(model, settings, task)
        kwargs = {}
        if settings.encoder_hidden_size:
            kwargs["encoder_hidden_size"] = settings.encoder_hidden_size
        config = PrefixTuningConfig(
            task_type=peft_task_type(task),
            num_virtual_tokens=settings.num_virtual_tokens,
            prefix_projection=settings.reparameterize,
            **kwargs,
        )
        return get_peft_model(model, config)

    def save(self, model: nn.Module, folder: Path, info: dict[str, Any]) -> None:
        """PEFT's layout; tunelab's encoder prefixes as trained tensors."""
        if hasattr(model, "peft_config"):
            super().save(model, folder, info)
        else:
            Method.save(self, model, folder, info)

    def load(self, base_model: nn.Module, folder: Path, info: dict[str, Any]) -> nn.Module:
        if (folder / WEIGHTS_FILE).is_file():
            return Method.load(self, base_model, folder, info)
        return super().load(base_model, folder, info)

    def export(self, artifact: Artifact, folder: Path, shown: Path) -> str:
        """The PEFT adapter; for encoder prefixes the model with generated code."""
        if not (artifact.dir / WEIGHTS_FILE).is_file():
            return super().export(artifact, folder, shown)
        from tunelab.methods.encoder_prefix_export import write_prefix_code

        model, tokenizer = artifact.load()
        save_whole(model, tokenizer, folder)
        write_prefix_code(model, folder)
        return (
            f"prefix tuning cannot be merged into the weights (the prefixes are extra attention "
            f"inputs); exported the model with its prefixes to {shown}: load it with "
            "AutoModelForSequenceClassification.from_pretrained(OUT, trust_remote_code=True)"
        )


def _takes_past_key_values(model: nn.Module) -> bool:
    """PEFT's SEQ_CLS prefix tuning passes the prefix as ``past_key_values`` to the backbone."""
    modules = (model, getattr(model, "base_model", model))
    return any("past_key_values" in inspect.signature(m.forward).parameters for m in modules)


PREFIX_TUNING = PrefixTuning()
