"""The CLI is a table over the modules that own each command; it stays light to build."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tunelab.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_commands() -> list[str]:
    """Command names in README's commands table: `tunelab NAME ...` (and `data SUB`)."""
    text = README.read_text(encoding="utf-8")
    table = text.split("## Commands", 1)[1].split("\n\n", 2)[1]
    return re.findall(r"^\| `tunelab ([a-z-]+(?: [a-z-]+)?)", table, flags=re.M)


def _listed(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_readme_command_is_in_help() -> None:
    names = _readme_commands()
    assert len(names) >= 9, names
    for name in names:
        *group, command = name.split()
        assert re.search(rf"│ {re.escape(command)}\s", _listed(group)), f"tunelab {name}"


def test_building_the_cli_imports_no_heavy_library() -> None:
    code = (
        "import sys, tunelab.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'peft') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
