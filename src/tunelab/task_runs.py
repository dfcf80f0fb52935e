"""Where a multi-task run (``data.tasks``) keeps its tasks: ``RUN_DIR/tasks/NAME/``.

Each task folder is a complete one-task run (``config.yaml``, ``model/``, results), listed in
``RUN_DIR/model/tunelab_tasks.json``; ``--task NAME`` of ``eval``, ``predict`` and ``export``
(and ``task=`` of the Python API) picks one.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config import RunConfig
from tunelab.errors import TunelabError

TASKS_FILE = "tunelab_tasks.json"


def run_tasks(run_dir: str | Path) -> list[str] | None:
    """The task names of a multi-task run directory, or None for a one-task run."""
    path = Path(run_dir) / "model" / TASKS_FILE
    if not path.is_file():
        return None
    return [entry["name"] for entry in json.loads(path.read_text(encoding="utf-8"))["tasks"]]


def task_dir(run_dir: str | Path, task: str | None) -> Path:
    """The run folder of ``task`` (``RUN_DIR/tasks/NAME``), or ``run_dir`` when ``task`` is None.

    A multi-task run needs a task; a one-task run takes none.
    """
    run_dir = Path(run_dir)
    names = run_tasks(run_dir)
    if task is None:
        if names:
            raise TunelabError(
                f"{run_dir} is a multi-task run (tasks {', '.join(names)}); pass --task NAME"
            )
        return run_dir
    if names is None:
        raise TunelabError(
            f"--task {task!r}: {run_dir} is not a multi-task run (no model/{TASKS_FILE}); "
            "drop --task"
        )
    if task not in names:
        raise TunelabError(
            f"--task {task!r}: no such task in {run_dir}; its tasks are {', '.join(names)}"
        )
    return run_dir / "tasks" / task


def handoff_model(handoff: Path, before: RunConfig, after: RunConfig) -> Path:
    """The model a stage starts from when the stage ``before`` handed its weights on to
    ``handoff``: that folder, or for a multi-task stage (one export per task, ``handoff/NAME``)
    the export of the first task the next stage also has, else of the task whose data path the
    next (one-dataset) stage reads, else of the first task. Other tasks' heads come from their
    sibling exports (``tunelab.train.multitask.head_source``)."""
    names = before.task_names
    if not names:
        return handoff
    shared = [name for name in names if name in after.task_names]
    if not shared and not after.task_names:
        shared = [n for n in names if before.for_task(n).data.path == after.data.path]
    return handoff / (shared or names)[0]
