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
) -> None:
    """Write a standalone merged model that loads without tunelab (OUT: a new or empty folder)."""
    from tunelab.export import export_run

    export_run(run_dir, out, console=console, overwrite=overwrite, task=task)
