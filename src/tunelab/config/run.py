"""The whole run config (:class:`RunConfig`) and the rules that span sections."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo

from tunelab.config.eval import EvalConfig
from tunelab.config.federated import FederatedConfig
from tunelab.config.method import METHODS, MethodConfig, default_method, method_union, set_methods
from tunelab.config.model import ModelConfig
from tunelab.config.output import OutputConfig
from tunelab.config.section import Section, Task
from tunelab.config.stages import StageConfig
from tunelab.config.tasks import (
    DataSection,
    MultiTaskData,
    one_task_data,
    single_task_data,
    task_kind,
)
from tunelab.config.train import TrainConfig
from tunelab.errors import TunelabError
from tunelab.modalities.registry import modality_for

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
    data: DataSection = Field(
        description="Where the data is and how to prepare it: one dataset, or data.tasks."
    )
    method: MethodConfig = _method_field()  # the registered methods' union: use_methods
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training settings.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation settings.")
    output: OutputConfig = Field(description="Where results go.")
    stages: list[StageConfig] | None = Field(
        default=None,
        description="Train in stages, in order, each from the weights the previous one ended "
        "with (see docs/training.md, Stages); None: one stage, the sections above.",
    )

    federated: FederatedConfig | None = Field(
        default=None, description="Federated fine-tuning (tunelab federated); None: off."
    )

    @model_validator(mode="before")
    @classmethod
    def _one_task(cls, values: Any) -> Any:
        """A ``data.tasks`` list of one valid task is that task's plain data block."""
        data = values.get("data") if isinstance(values, dict) else None
        if (
            isinstance(data, dict)
            and isinstance(data.get("tasks"), list)
            and len(data["tasks"]) == 1
        ):
            return {**values, "data": one_task_data(data)}
        return values

    @model_validator(mode="after")
    def _cross_sections(self) -> RunConfig:
        task, name = self.task, self.method.name
        if isinstance(self.data, MultiTaskData):
            self._check_tasks()
        elif task_kind(self.data.format) == "classification" and task == "causal_lm":
            raise ValueError(f"model.task causal_lm does not fit data.format {self.data.format}")
        if task_kind(self.data.format) != "classification" and task == "classification":
            raise ValueError(
                f"model.task classification needs data.format classification, not {self.data.format!r}"
            )
        if not isinstance(self.data, MultiTaskData) and (m := modality_for(self.data.format)):
            problems = m.config_problems(self)
            if problems:
                raise ValueError("; ".join(problems))
        if self.train.llrd is not None and not METHODS[name].layerwise_lr:
            allowed = " or ".join(m.name for m in METHODS.values() if m.layerwise_lr)
            raise ValueError(f"train.llrd applies to method {allowed}, not {name!r}")
        if self.train.packing and task != "causal_lm":
            raise ValueError("train.packing applies to causal_lm tasks only")
        if self.train.packing and METHODS[name].virtual_tokens:
            raise ValueError(
                f"train.packing does not work with method {name} (it prepends virtual tokens)"
            )
        auto = name == "auto" or self.train.batch_size == "auto"
        if auto and (self.stages or isinstance(self.data, MultiTaskData)):
            raise ValueError(
                "method.name / train.batch_size auto plan one stage over one dataset; set them "
                "explicitly with stages: or data.tasks (tunelab plan shows what fits)"
            )
        if self.federated and (self.stages or isinstance(self.data, MultiTaskData)):
            raise ValueError(
                "federated: takes one stage over one dataset; remove stages: / data.tasks, "
                "or train them with tunelab train"
            )
        if (
            self.federated
            and self.federated.partition.kind == "dirichlet"
            and task != "classification"
        ):
            raise ValueError(
                "federated.partition.kind dirichlet splits by label and needs data.format "
                "classification; use kind: iid (or files)"
            )
        if (
            self.federated
            and self.federated.partition.kind == "column"
            and not self.data.validation_path
        ):
            raise ValueError(
                "federated.partition.kind column needs data.validation_path (otherwise the "
                "global validation rows would also be in a client's data)"
            )
        return self

    def _check_tasks(self) -> None:
        """Every task's format fits the model's task type; no prompting baseline."""
        if self.eval.prompting_baseline:
            raise ValueError(
                "eval.prompting_baseline takes one dataset, not data.tasks; set it to false"
            )
        for i, entry in enumerate(self.data.tasks):
            if task_kind(entry.format) != self.task:
                raise ValueError(
                    f"data.tasks.{i} ({entry.name}): format {entry.format!r} does not fit "
                    f"model.task {self.task}; use a {self.task} format for every task or change "
                    "model.task"
                )

    @property
    def task_names(self) -> list[str]:
        """The names of ``data.tasks`` (empty for one dataset)."""
        if isinstance(self.data, MultiTaskData):
            return [t.name for t in self.data.tasks]
        return []

    def for_task(self, name: str) -> RunConfig:
        """Task ``name`` as a one-dataset run: its data block, ``output.dir`` RUN_DIR/tasks/NAME."""
        if not isinstance(self.data, MultiTaskData):
            raise TunelabError(f"--task {name!r}: this run has one dataset, no data.tasks")
        data = single_task_data(self.data, self.data.task(name))
        output = self.output.model_copy(update={"dir": str(self.run_dir / "tasks" / name)})
        return self.model_copy(update={"data": data, "output": output})

    @property
    def task(self) -> Task:
        """The model task, given or inferred from the data format."""
        if self.model.task:
            return self.model.task
        return task_kind(self.data.format)

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
