"""The ``model`` section: which pretrained model to start from and how to load it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunelab.config.section import Section, Task


class ModelConfig(Section):
    name_or_path: str = Field(description="Local directory or hub id of the pretrained model.")
    tokenizer: str | None = Field(
        default=None, description="Tokenizer path or id; defaults to model.name_or_path."
    )
    task: Task | None = Field(
        default=None,
        description="classification, causal_lm or speech_to_text; inferred from data.format "
        "when omitted (classification -> classification, speech -> speech_to_text, every other "
        "format -> causal_lm).",
    )
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        default="float32", description="dtype the weights are loaded in."
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] | None = Field(
        default=None, description="Attention kernel; None lets Transformers choose (sdpa)."
    )
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute activations in backward to save memory."
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow custom modelling code shipped with the model."
    )
    gguf_file: str | None = Field(
        default=None,
        description="GGUF file name inside model.name_or_path; it is dequantised once and the "
        "result cached under model.cache_dir.",
    )
    cache_dir: str | None = Field(
        default=None,
        description="Where dequantised GGUF models are cached (default ~/.cache/tunelab/models).",
    )
