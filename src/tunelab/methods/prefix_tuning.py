"""Prefix tuning: through PEFT for decoders; tunelab's own prefixes for encoder classification.

PEFT passes its prefixes as ``past_key_values``, which Transformers 5's encoders (BERT) no
longer take; those get :mod:`tunelab.methods.encoder_prefix` instead.
"""

from __future__ import annotations

import inspect

from torch import nn

from tunelab.config import PrefixTuningSettings, Task
from tunelab.errors import TunelabError
from tunelab.methods.encoder_prefix import apply_encoder_prefix, is_encoder
from tunelab.methods.lora import peft_task_type


def apply_prefix_tuning(model: nn.Module, settings: PrefixTuningSettings, task: Task) -> nn.Module:
    """Prepend trainable key/value prefixes to every attention layer (optionally via an MLP)."""
    from peft import PrefixTuningConfig, get_peft_model

    if task == "classification" and not _takes_past_key_values(model):
        if is_encoder(model):
            return apply_encoder_prefix(model, settings, task)
        raise TunelabError(
            f"method prefix_tuning: {type(model).__name__} takes no past key values, which "
            "PEFT's prefix tuning for classification needs (tunelab's own prefixes cover "
            "BERT-style encoders); use prompt_tuning or lora instead"
        )
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


def _takes_past_key_values(model: nn.Module) -> bool:
    """PEFT's SEQ_CLS prefix tuning passes the prefix as ``past_key_values`` to the backbone."""
    modules = (model, getattr(model, "base_model", model))
    return any("past_key_values" in inspect.signature(m.forward).parameters for m in modules)
