"""Export a run as a standalone model that plain Transformers loads without tunelab.

What is written is the method's ``export`` (:class:`tunelab.methods.base.Method`):
- full, freeze, bitfit: the trained weights are written into the base model's weights.
- lora (also rsLoRA, DoRA): merged into the base weights with PEFT's ``merge_and_unload``.
- adapter: cannot be folded (non-linear); a self-contained model with generated code
  (``methods/adapter_export.py``); load it with ``trust_remote_code=True``.
- prompt_tuning, prefix_tuning: cannot be merged (the soft prompt / prefix is an extra input,
  not a weight change); the PEFT adapter is exported instead, for
  ``peft.PeftModel.from_pretrained(base, OUT)``.
- prefix_tuning on an encoder (tunelab's own prefixes): exported like adapter, with generated
  code (``methods/encoder_prefix_export.py``); load it with ``trust_remote_code=True``.

Every export holds ``tunelab_export.json`` (the run, the method and the files written) and
what tunelab needs to serve it as trained (``tunelab_rendering.json``, ``tunelab_method.json``;
see :mod:`tunelab.export_serving`), so ``tunelab serve``/``load`` take an export too. An
output folder that is not empty is refused, unless ``overwrite`` is set and it holds an earlier
export and nothing else; the run itself (or a folder inside it) is never a valid output.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.export_serving import not_servable, write_serving_files
from tunelab.export_target import check_output, write_marker
from tunelab.io import atomic_dir, recover_dir
from tunelab.methods.artifacts import load_artifact, read_method_info
from tunelab.methods.base import Artifact
from tunelab.methods.registry import get_method
from tunelab.task_runs import run_tasks, task_dir

if TYPE_CHECKING:
    from rich.console import Console


def artifact_dir(run_or_artifact: str | Path) -> Path:
    """The artifact folder of a run directory (``RUN_DIR/model``), or the folder itself."""
    path = Path(run_or_artifact)
    recover_dir(path / "model")  # a crash while the model was being replaced
    task_dir(path, None)  # a multi-task run: name the task
    if (path / "model" / "tunelab_method.json").is_file():
        return path / "model"
    if (path / "tunelab_method.json").is_file():
        return path
    if not path.is_dir():
        raise TunelabError(f"{path}: no such run directory")
    reason = not_servable(path)
    if reason is not None:
        raise TunelabError(reason)
    raise TunelabError(f"{path}: no trained model in it (expected {path / 'model'}); train first")


def export_run(
    run_dir: str | Path,
    out: str | Path,
    console: Console | None = None,
    overwrite: bool = False,
    task: str | None = None,
) -> Path:
    """Write a standalone merged model (or, for prompt/prefix tuning, the PEFT adapter) to ``out``.

    ``overwrite`` lets ``out`` be replaced when it holds an earlier tunelab export (and only
    then); a non-empty ``out`` is refused otherwise, and so is the run directory or any folder
    inside it. A multi-task run exports ``task``, or with none every task to ``out/NAME``.
    """
    names = run_tasks(run_dir)
    if names and task is None:
        for name in names:
            export_run(run_dir, Path(out) / name, console, overwrite, name)
        return Path(out)
    source = artifact_dir(task_dir(run_dir, task))
    info = read_method_info(source)
    method = get_method(info["method"])
    out = Path(out)
    check_output(Path(run_dir), source, out, overwrite)
    artifact = Artifact(source, info, lambda: load_artifact(source))
    with atomic_dir(out) as tmp:
        note = method.export(artifact, tmp, out)
        write_serving_files(tmp, source, info)
        write_marker(tmp, source, method.name)
    _say(console, note)
    return out


def _say(console: Console | None, text: str) -> None:
    if console is not None:
        console.print(text)
