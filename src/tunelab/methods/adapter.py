"""Bottleneck adapters (Houlsby, Pfeiffer), written in tunelab.

Each adapted sublayer output projection (``o_proj``/``down_proj`` in Llama, ``attn.c_proj``/
``mlp.c_proj`` in GPT-2, ``attention.output.dense``/``output.dense`` in BERT) is wrapped so its
output ``y`` becomes ``y + up(dropout(act(down(y))))``, before the block's residual add.
``up`` starts at zero, so the adapted model computes exactly the base model at step 0.
The artifact holds the trained tensors; the export is generated code
(:mod:`tunelab.methods.adapter_export`), since an adapter cannot be folded into a weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from tunelab.config.section import Fraction, PositiveInt, Section
from tunelab.errors import TunelabError
from tunelab.methods.base import Artifact, Method, save_whole
from tunelab.methods.common import find_blocks, head_names, set_trainable

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config.section import Task

ATTENTION_OUTPUTS = (
    "attention.output.dense",
    "self_attn.o_proj",
    "attn.c_proj",
    "self_attn.out_proj",
    "attention.dense",
)
FFN_OUTPUTS = ("output.dense", "mlp.down_proj", "mlp.c_proj", "mlp.fc2", "fc2", "mlp.dense_4h_to_h")


class AdapterSettings(Section):
    """Bottleneck adapters (Houlsby or Pfeiffer)."""

    kind: Literal["houlsby", "pfeiffer"] = Field(
        default="pfeiffer",
        description="houlsby: after attention and after the feed-forward sublayer; "
        "pfeiffer: after the feed-forward sublayer only.",
    )
    bottleneck_size: PositiveInt | None = Field(
        default=None, description="Bottleneck width; or give reduction_factor."
    )
    reduction_factor: PositiveInt | None = Field(
        default=None, description="hidden_size / bottleneck (default 16 when neither is given)."
    )
    activation: Literal["relu", "gelu", "silu", "tanh"] = Field(
        default="relu", description="Activation inside the bottleneck."
    )
    dropout: Fraction = Field(default=0.0, description="Dropout inside the adapter.")
    train_head: bool = Field(default=True, description="Also train the task head.")

    @model_validator(mode="after")
    def _size(self) -> AdapterSettings:
        if self.bottleneck_size is not None and self.reduction_factor is not None:
            raise ValueError("give bottleneck_size or reduction_factor, not both")
        return self


def bottleneck_size(hidden: int, settings: AdapterSettings) -> int:
    """The bottleneck width: given, or hidden / reduction_factor (default 16)."""
    if settings.bottleneck_size:
        return settings.bottleneck_size
    return max(1, hidden // (settings.reduction_factor or 16))


def adapter_sites(model: nn.Module, kind: str) -> list[str]:
    """Module paths to wrap: per block the FFN output, plus the attention output for houlsby."""
    blocks_name, blocks = find_blocks(model)
    groups = (ATTENTION_OUTPUTS, FFN_OUTPUTS) if kind == "houlsby" else (FFN_OUTPUTS,)
    sites = []
    for i, block in enumerate(blocks):
        for candidates in groups:
            found = next((c for c in candidates if _has_submodule(block, c)), None)
            if found is None:
                raise TunelabError(
                    f"method adapter: cannot find the sublayer outputs in {type(block).__name__} "
                    f"(looked for {', '.join(candidates)}); use method lora instead"
                )
            sites.append(f"{blocks_name}.{i}.{found}")
    return sites


class Adapter(Method):
    name = "adapter"
    settings = AdapterSettings
    description = (
        "bottleneck adapters after sublayer outputs (Houlsby, Pfeiffer); generated-code export"
    )
    plain_export = False

    def apply(self, model: nn.Module, settings: AdapterSettings, task: Task) -> nn.Module:
        """Insert adapters and train only them (plus the task head when ``train_head``)."""
        return apply_adapter(model, settings, task)

    def export(self, artifact: Artifact, folder: Path, shown: Path) -> str:
        """The model with its adapters, in a generated modelling file (``trust_remote_code``)."""
        from tunelab.methods.adapter_export import write_adapter_code

        model, tokenizer = artifact.load()
        save_whole(model, tokenizer, folder)
        settings = AdapterSettings.model_validate(artifact.info["settings"])
        hidden = int(model.config.hidden_size)
        spec = {
            "sites": adapter_sites(model, settings.kind),
            "hidden": hidden,
            "size": bottleneck_size(hidden, settings),
            "activation": settings.activation,
        }
        write_adapter_code(model, artifact.info["task"], spec, folder)
        return (
            "bottleneck adapters are non-linear and cannot be folded into the base weights; "
            f"exported the model with its adapters to {shown}: load it with "
            "AutoModelFor...from_pretrained(OUT, trust_remote_code=True)"
        )


def apply_adapter(model: nn.Module, settings: AdapterSettings, task: Task) -> nn.Module:
    """Wrap every adapter site in an :class:`AdaptedSublayer`; train the adapters (and head)."""
    from tunelab.methods.adapter_layers import AdaptedSublayer, Bottleneck

    head = head_names(model, task) if settings.train_head else set()
    hidden = int(model.config.hidden_size)
    size = bottleneck_size(hidden, settings)
    for path in adapter_sites(model, settings.kind):
        base = model.get_submodule(path)
        weight = next(base.parameters())
        adapter = Bottleneck(hidden, size, settings.activation, settings.dropout)
        adapter.to(device=weight.device, dtype=weight.dtype)
        parent, _, leaf = path.rpartition(".")
        setattr(model.get_submodule(parent), leaf, AdaptedSublayer(base, adapter))
    trainable = {n for n, _ in model.named_parameters() if ".adapter." in n} | head
    set_trainable(model, trainable)
    return model


ADAPTER = Adapter()


def _has_submodule(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True
