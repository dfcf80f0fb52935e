"""The report ``tunelab train`` keeps in the run directory: rewritten at every validation
(reloading itself while training runs) and at the end (no longer reloading)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tunelab.errors import first_line
from tunelab.report.build import REPORT_FILE, write_report


def update_run_report(run_dir: Path, live: bool, console: Console | None = None) -> bool:
    """Write ``RUN_DIR/report.html``; return whether it was written.

    The report is a side output: a failure to write it is a warning, never the end of a run.
    """
    try:
        write_report([run_dir], Path(run_dir) / REPORT_FILE, live=live)
    except Exception as exc:  # training goes on whatever the report hits
        if console is not None:
            console.print(
                f"[yellow]warning:[/] {Path(run_dir) / REPORT_FILE} not updated "
                f"({type(exc).__name__}: {first_line(exc)})",
                soft_wrap=True,
            )
        return False
    return True
