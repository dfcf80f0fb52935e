"""``tunelab validate`` and ``tunelab schema``: check a run config, print its JSON Schema."""

from __future__ import annotations

import json
import sys

from tunelab.cli_args import ConfigArg, OverridesArg, console, err_console, load_run_config


def validate(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Check a run config, its files, model and metrics; print OK or every problem (exit 2)."""
    from tunelab.preflight import check_run

    check_run(load_run_config(config, overrides), err_console, source=str(config))
    console.print("OK")


def schema() -> None:
    """Print the JSON Schema of the run config."""
    from tunelab.config import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
