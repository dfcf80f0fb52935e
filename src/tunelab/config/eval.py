"""The ``eval`` section: split, metrics, generation settings and the prompting baseline."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunelab.config.section import PositiveInt, Section
from tunelab.evaluate.registry import MetricName


class GenerationConfig(Section):
    max_new_tokens: PositiveInt = Field(default=64, description="Tokens to generate at most.")
    do_sample: bool = Field(default=False, description="Sample instead of greedy decoding.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    repetition_penalty: float = Field(default=1.0, gt=0, description="Repetition penalty.")


class EvalConfig(Section):
    split: Literal["train", "validation", "test"] = Field(
        default="test", description="Split to evaluate."
    )
    metrics: list[MetricName] | None = Field(
        default=None, description="Metrics to compute; default chosen by task and format."
    )
    batch_size: PositiveInt = Field(default=16, description="Evaluation batch size.")
    max_samples: PositiveInt | None = Field(default=None, description="Evaluate at most N rows.")
    generation: GenerationConfig = Field(
        default_factory=GenerationConfig, description="Decoding settings for generation tasks."
    )
    at_end: bool = Field(default=True, description="Evaluate automatically when training ends.")
    prompting_baseline: bool = Field(
        default=False, description="Also evaluate the base model zero-shot and k-shot."
    )
    shots: int = Field(default=3, ge=0, description="k for the k-shot prompting baseline.")
    language: Literal["auto", "en", "zh"] = Field(
        default="auto", description="Tokenisation for BLEU/ROUGE/EM; auto detects Chinese."
    )
    nli_model: str | None = Field(
        default=None, description="Local NLI model path for the optional consistency scorer."
    )
