"""``tunelab sweep``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunelab.cli_args import ConfigArg, console


def sweep(
    config: ConfigArg,
    sets: Annotated[
        list[str],
        typer.Option("--set", help="KEY=V1,V2,...: the values one config key takes (repeatable)."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="Sweep directory (default: the config's output.dir)."),
    ] = None,
) -> None:
    """Train every combination of the --set values, one run directory each, then tabulate."""
    from tunelab.sweep.runner import require_complete
    from tunelab.sweep.runner import sweep as run_sweep

    require_complete(run_sweep(config, sets, out, console=console))
