"""Override a model's hidden and attention dropout (config values and live modules)."""

from __future__ import annotations

import re

from torch import nn

HIDDEN_KEYS = ("hidden_dropout_prob", "hidden_dropout", "resid_pdrop", "embd_pdrop", "dropout")
ATTENTION_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")
# nn.Dropout modules on attention probabilities (BERT, GPT-2 and similar naming)
ATTENTION_MODULE = re.compile(r"(attn_dropout|attention\.self\.dropout|attention_dropout)$")
# dropout that belongs to a fine-tuning method (LoRA, bottleneck adapters): left alone
METHOD_MODULE = re.compile(r"(lora_|adapter)")


def set_dropout(model: nn.Module, hidden: float | None, attention: float | None) -> None:
    """Set dropout probabilities (None leaves that kind as the model has it).

    Updates the model config keys that exist and every ``nn.Dropout`` (hidden or attention by
    name), plus float ``attention_dropout`` attributes read in forward (Llama, Qwen2).
    """
    config = getattr(model, "config", None)
    for keys, value in ((HIDDEN_KEYS, hidden), (ATTENTION_KEYS, attention)):
        for key in keys if value is not None else ():
            if isinstance(getattr(config, key, None), float | int):
                setattr(config, key, value)
    for name, module in model.named_modules():
        if METHOD_MODULE.search(name):
            continue
        if isinstance(module, nn.Dropout):
            value = attention if ATTENTION_MODULE.search(name) else hidden
            if value is not None:
                module.p = value
        elif attention is not None and isinstance(
            getattr(module, "attention_dropout", None), float
        ):
            module.attention_dropout = attention
