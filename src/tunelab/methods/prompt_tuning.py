"""Soft prompt tuning through PEFT."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from tunelab.config.section import PositiveInt, Section
from tunelab.methods.peft_method import PeftMethod, peft_task_type

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config.section import Task


class PromptTuningSettings(Section):
    """Soft prompt tuning through PEFT."""

    num_virtual_tokens: PositiveInt = Field(default=20, description="Soft prompt length.")
    init: Literal["random", "text"] = Field(default="random", description="Initialisation.")
    init_text: str | None = Field(default=None, description="Text to initialise from (init: text).")

    @model_validator(mode="after")
    def _init_text(self) -> PromptTuningSettings:
        if self.init == "text" and not self.init_text:
            raise ValueError("init: text needs init_text")
        if self.init == "random" and self.init_text:
            raise ValueError("init_text is set but init is random; set init: text")
        return self


class PromptTuning(PeftMethod):
    name = "prompt_tuning"
    settings = PromptTuningSettings
    description = "a trainable soft prompt prepended to the input (PEFT)"
    virtual_tokens = True

    def apply(self, model: nn.Module, settings: PromptTuningSettings, task: Task) -> nn.Module:
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


PROMPT_TUNING = PromptTuning()
