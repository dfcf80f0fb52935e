"""Multi-task data: ``data.tasks``, several datasets with their own settings, and the mixing rule.

A ``data`` section with a ``tasks`` key is a :class:`MultiTaskData`; without one it is the
one-dataset :class:`tunelab.config.data.DataConfig` (``data_union`` tells them apart). Each
task is a whole data block (path, format, columns, cleaning, split, template...) plus a
``name``, a sampling ``weight`` and a ``loss_weight``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from tunelab.config.data import DataConfig
from tunelab.config.section import Section
from tunelab.errors import TunelabError
from tunelab.modalities.registry import format_task

TaskName = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        max_length=40,
        description="Task name: lowercase letters, digits and _ (it names metrics and folders).",
    ),
]


class TaskConfig(DataConfig):
    """One dataset of a multi-task run: a whole ``data`` block plus name and weights."""

    name: TaskName
    weight: float = Field(
        default=1.0,
        gt=0,
        description="Sampling weight (used by mixing: weights); must be > 0.",
    )
    loss_weight: float = Field(
        default=1.0, gt=0, description="Multiplies this task's loss (its batches' gradient)."
    )


class MultiTaskData(Section):
    """Several datasets trained together; each batch holds one task."""

    tasks: list[TaskConfig] = Field(
        min_length=1, description="The datasets, each a data block with a name and weights."
    )
    mixing: Literal["proportional", "weights", "temperature"] = Field(
        default="proportional",
        description="How a batch's task is drawn: proportional to training rows n_i; "
        "weights: proportional to each task's weight; temperature: p_i ~ n_i^(1/T).",
    )
    temperature: float = Field(
        default=2.0, gt=0, description="T of mixing: temperature (1: proportional; large: uniform)."
    )
    cache_dir: str | None = Field(
        default=None, description="Tokenised-data cache (default ~/.cache/tunelab/data)."
    )

    @model_validator(mode="after")
    def _check_tasks(self) -> MultiTaskData:
        seen: dict[str, int] = {}
        for i, task in enumerate(self.tasks):
            if task.name in seen:
                raise ValueError(
                    f"tasks.{i}.name: duplicate task name {task.name!r} (also tasks.{seen[task.name]}"
                    "); give every task a unique name"
                )
            seen[task.name] = i
        weighted = [t.name for t in self.tasks if t.weight != 1.0]  # 1.0: also a dumped config
        if weighted and self.mixing != "weights":
            raise ValueError(
                f"task {weighted[0]!r} sets weight but mixing is {self.mixing!r}, which ignores "
                "it; set data.mixing: weights or remove the weight"
            )
        kinds = {task_kind(t.format) for t in self.tasks}
        if len(kinds) > 1:
            named = ", ".join(f"{t.name} ({t.format})" for t in self.tasks)
            raise ValueError(
                f"tasks mix classification and text-generation formats ({named}); one run trains "
                "classification heads or one causal LM: render the classification data as "
                "instruction rows, or train them in separate runs"
            )
        return self

    @property
    def format(self) -> str:
        """The first task's format (what ``cfg.task`` is inferred from)."""
        return self.tasks[0].format

    def task(self, name: str) -> TaskConfig:
        """The task called ``name``; a TunelabError names the tasks there are."""
        for task in self.tasks:
            if task.name == name:
                return task
        names = ", ".join(t.name for t in self.tasks)
        raise TunelabError(f"--task {name!r}: no such task; the run's tasks are {names}")


def task_kind(fmt: str) -> str:
    """``classification`` or ``causal_lm`` (or a modality's task): what a data format trains."""
    return format_task(fmt)


def _data_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "tasks" if "tasks" in value else "single"
    return "tasks" if isinstance(value, MultiTaskData) else "single"


DataSection = Annotated[
    Annotated[DataConfig, Tag("single")] | Annotated[MultiTaskData, Tag("tasks")],
    Discriminator(_data_kind),
]


def single_task_data(multi: MultiTaskData, task: TaskConfig) -> DataConfig:
    """``task`` as a one-dataset data block (the run's cache folder)."""
    values = task.model_dump(exclude={"name", "weight", "loss_weight"})
    return DataConfig.model_validate({**values, "cache_dir": task.cache_dir or multi.cache_dir})


def one_task_data(data: dict[str, Any]) -> dict[str, Any]:
    """The raw ``data`` of a one-task list as that task's plain data block (left as it is when
    it does not validate, so its problems are reported)."""
    try:
        multi = MultiTaskData.model_validate(data)
    except ValidationError:
        return data
    return single_task_data(multi, multi.tasks[0]).model_dump(exclude_unset=False)
