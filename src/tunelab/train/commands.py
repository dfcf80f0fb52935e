"""``tunelab train``."""

from __future__ import annotations

from typing import Annotated

import typer

from tunelab.cli_args import ConfigArg, OverridesArg, console, load_run_config


def train(
    config: ConfigArg,
    overrides: OverridesArg = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume/--no-resume",
            help="Resume from the run directory's latest checkpoint (default: auto when the "
            "config matches).",
        ),
    ] = None,
) -> None:
    """Train a model as the config describes."""
    from tunelab.doctor import diagnose, print_findings
    from tunelab.train.stages import train as run_training

    result = run_training(load_run_config(config, overrides), resume=resume, console=console)
    trained = result.stop_reason != "already_finished" and result.summary
    findings = diagnose(result.run_dir) if trained else []
    if findings:  # the doctor's findings on the run just trained, when it has any
        print_findings(findings, console, str(result.run_dir))
