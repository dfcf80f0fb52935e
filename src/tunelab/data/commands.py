"""``tunelab data prepare`` and ``tunelab data inspect``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tunelab.cli_args import ConfigArg, OverridesArg, console, load_run_config

app = typer.Typer(help="Prepare and inspect a run's data.", no_args_is_help=True)


@app.command("prepare")
def prepare(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Load, clean, split and tokenise the data (cached); print the data report."""
    from tunelab.data import print_report

    print_report(checked_data(config, overrides), console)


@app.command("inspect")
def inspect(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Print rows per split, labels, token-length percentiles and cleaning counts."""
    from tunelab.data import print_inspection

    print_inspection(checked_data(config, overrides), console)


def checked_data(config: Path, overrides: list[str] | None) -> Any:
    """The config's prepared data, after the data checks of ``tunelab validate``."""
    from tunelab.data import prepare_data
    from tunelab.preflight import check_data

    cfg = load_run_config(config, overrides)
    check_data(cfg, source=str(config))
    return prepare_data(cfg)
