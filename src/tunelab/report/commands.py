"""``tunelab report RUN_DIR [RUN_DIR ...] [-o FILE]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunelab.cli_args import console, err_console


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run directories.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="HTML file to write (default: RUN_DIR/report.html for one run, "
            "./report.html for several).",
        ),
    ] = None,
) -> None:
    """Write an HTML report of a run, or a comparison of several (opens offline)."""
    from tunelab.report.build import write_runs

    written = write_runs(run_dirs, output)
    for run_note in written.notes:
        err_console.print(f"[yellow]note:[/] {run_note}", soft_wrap=True, highlight=False)
    console.print(f"report written to {written.path}", soft_wrap=True, highlight=False)
