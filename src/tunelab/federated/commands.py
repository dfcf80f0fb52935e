"""``tunelab federated``."""

from __future__ import annotations

from typing import Annotated

import typer

from tunelab.cli_args import ConfigArg, OverridesArg, console, load_run_config


def federated(
    config: ConfigArg,
    overrides: OverridesArg = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume/--no-resume",
            help="Resume after the last completed round (default: auto when the config matches).",
        ),
    ] = None,
) -> None:
    """Federated fine-tuning on Flower, as the config's federated: section describes."""
    from tunelab.federated import federate

    federate(load_run_config(config, overrides), resume=resume, console=console)
