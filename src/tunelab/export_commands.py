"""``tunelab export``: the command over ``tunelab.export.export_run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunelab.cli_args import console


def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    out: Annotated[Path, typer.Argument(help="Where to write the standalone model.")],
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace an earlier tunelab export in OUT (never other files)."
        ),
    ] = False,
    task: Annotated[
        str | None, typer.Option(help="Task of a multi-task run (default: each to OUT/NAME).")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--for",
            help="vllm or sglang: a LoRA adapter they load (or a merged model), else what to change.",
        ),
    ] = None,
) -> None:
    """Write a standalone merged model that loads without tunelab (OUT: a new or empty folder)."""
    if target is not None:
        from tunelab.export_vllm import export_for
        from tunelab.task_runs import task_dir

        source = task_dir(run_dir, task) if task else run_dir
        export_for(target, source, out, console=console, overwrite=overwrite)
        return
    from tunelab.export import export_run

    export_run(run_dir, out, console=console, overwrite=overwrite, task=task)
