"""``tunelab tune CONFIG --trials N --space KEY=SPEC ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunelab.cli_args import ConfigArg, OverridesArg, console


def tune(
    config: ConfigArg,
    overrides: OverridesArg = None,
    trials: Annotated[
        int, typer.Option("--trials", help="Finished trials the study should have.")
    ] = 10,
    space: Annotated[
        list[str] | None,
        typer.Option("--space", help="KEY=LOW:HIGH[:log][:int] or KEY=A,B,C (repeat it)."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage URL (default: sqlite in the tune folder); "
            "workers on several machines share one study through it.",
        ),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option("--study-name", help="Default: the config's name.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Trials, study.db, best_config.yaml (default: OUTPUT_DIR/tune)."
        ),
    ] = None,
) -> None:
    """Search hyperparameters with Optuna (pruning on the validation metric; resumable)."""
    from tunelab.tune.study import tune as run_tune

    run_tune(config, space or [], trials, overrides or [], storage, study_name, out, console)
