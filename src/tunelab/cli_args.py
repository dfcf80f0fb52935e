"""What every command module shares: the config and overrides arguments, the consoles, and
loading a config with its overrides.

Command modules import only this, typer and the standard library at module level; their
heavy imports (torch, transformers) stay inside the command bodies, so building the CLI is
fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from tunelab.config import RunConfig

console = Console()
err_console = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML).")]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Overrides such as train.lr=1e-4 data.max_length=256."),
]


def load_run_config(config: Path, overrides: list[str] | None) -> RunConfig:
    """The run config at ``config`` with the command line's ``key=value`` overrides applied."""
    from tunelab.config import load_config

    return load_config(config, overrides or [])
