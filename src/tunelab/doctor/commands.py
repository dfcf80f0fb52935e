"""``tunelab doctor RUN_DIR``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tunelab.cli_args import console


def doctor(
    run_dir: Annotated[Path, typer.Argument(help="A training run's output.dir.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Diagnose a training run: each finding with its evidence and the config change to try."""
    from tunelab.doctor.registry import diagnose
    from tunelab.doctor.report import print_findings

    findings = diagnose(run_dir)
    if as_json:
        print(json.dumps([f.to_dict() for f in findings], indent=1))
        return
    print_findings(findings, console, str(run_dir))
