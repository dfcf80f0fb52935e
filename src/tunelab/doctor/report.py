"""Printing the doctor's findings."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from tunelab.doctor.finding import Finding

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def print_findings(findings: list[Finding], console: Console, run_dir: str = "") -> None:
    """One block per finding: title, evidence, the change to try."""
    if not findings:
        console.print(f"doctor: no problems found{' in ' + run_dir if run_dir else ''}")
        return
    console.print(
        f"[bold]doctor[/]: {len(findings)} finding(s){' in ' + run_dir if run_dir else ''}"
    )
    for f in findings:
        console.print(
            f"[{STYLE[f.severity]}]{f.severity}[/] {escape(f.title)} [dim]({f.code})[/]",
            soft_wrap=True,
        )
        console.print(f"  evidence: {escape(f.evidence)}", soft_wrap=True, highlight=False)
        console.print(f"  try: {escape(f.fix)}", soft_wrap=True, highlight=False)
