"""The whole run config (:class:`RunConfig`) and the rules that span sections."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo

from tunelab.config.data import DataConfig
from tunelab.config.eval import EvalConfig
from tunelab.config.method import METHODS, MethodConfig, default_method, method_union, set_methods
from tunelab.config.model import ModelConfig
from tunelab.config.output import OutputConfig
from tunelab.config.section import Section, Task
from tunelab.config.stages import StageConfig
from tunelab.config.train import TrainConfig

if TYPE_CHECKING:
    from tunelab.methods.base import Method


def _method_field() -> FieldInfo:
    """``RunConfig.method``'s field: defaults, description, and the tag in the JSON schema."""
    return Field(
        default_factory=default_method,
        description="Fine-tuning method and its settings.",
        json_schema_extra={"discriminator": {"propertyName": "name"}},
    )


class RunConfig(Section):
    """A whole fine-tuning run."""

    model_config = ConfigDict(defer_build=True)  # built by use_methods, with the method union

    model: ModelConfig = Field(description="Which pretrained model to start from.")
    data: DataConfig = Field(description="Where the data is and how to prepare it.")
    method: MethodConfig = _method_field()  # the registered methods' union: use_methods
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training settings.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation settings.")
    output: OutputConfig = Field(description="Where results go.")
    stages: list[StageConfig] | None = Field(
        default=None,
        description="Train in stages, in order, each from the weights the previous one ended "
        "with (see docs/training.md, Stages); None: one stage, the sections above.",
    )

    @model_validator(mode="after")
    def _cross_sections(self) -> RunConfig:
        task, name = self.task, self.method.name
        if self.data.format == "classification" and task == "causal_lm":
            raise ValueError("model.task causal_lm does not fit data.format classification")
        if self.data.format != "classification" and task == "classification":
            raise ValueError(
                f"model.task classification needs data.format classification, not {self.data.format!r}"
            )
        if self.train.llrd is not None and not METHODS[name].layerwise_lr:
            allowed = " or ".join(m.name for m in METHODS.values() if m.layerwise_lr)
            raise ValueError(f"train.llrd applies to method {allowed}, not {name!r}")
        if self.train.packing and task != "causal_lm":
            raise ValueError("train.packing applies to causal_lm tasks only")
        if self.train.packing and METHODS[name].virtual_tokens:
            raise ValueError(
                f"train.packing does not work with method {name} (it prepends virtual tokens)"
            )
        return self

    @property
    def task(self) -> Task:
        """The model task, given or inferred from the data format."""
        if self.model.task:
            return self.model.task
        return "classification" if self.data.format == "classification" else "causal_lm"

    @property
    def run_dir(self) -> Path:
        return Path(self.output.dir)


def use_methods(methods: dict[str, Method]) -> None:
    """Make ``RunConfig.method`` the union of ``methods`` (the registry calls this)."""
    set_methods(methods)
    RunConfig.model_fields["method"] = FieldInfo.from_annotated_attribute(
        method_union(), _method_field()
    )
    RunConfig.model_rebuild(force=True)
