"""Build and write the report of one run or a comparison of several."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TunelabError, first_line
from tunelab.io import atomic_write_text
from tunelab.report.page import RELOAD_S, Page, document, esc, note
from tunelab.report.registry import SECTIONS
from tunelab.report.rundata import RunData, load_run

REPORT_FILE = "report.html"


def default_output(run_dirs: Sequence[str | Path]) -> Path:
    """``RUN_DIR/report.html`` for one run, ``./report.html`` for several."""
    return Path(run_dirs[0]) / REPORT_FILE if len(run_dirs) == 1 else Path(REPORT_FILE)


def load_runs(run_dirs: Sequence[str | Path]) -> list[RunData]:
    """Every run directory read (one-line error for a path that is not a run directory);
    runs are named by their folder, with the parent folder added where two names clash."""
    if not run_dirs:
        raise TunelabError("no run directory given; pass one or more RUN_DIRs")
    paths = [Path(p) for p in run_dirs]
    names = [p.name or str(p) for p in paths]
    clashes = {n for n in names if names.count(n) > 1}
    named = [
        f"{p.parent.name}/{p.name}" if n in clashes else n
        for p, n in zip(paths, names, strict=True)
    ]
    if len(set(named)) < len(named):
        named = [str(p) for p in paths]
    return [load_run(p, n) for p, n in zip(paths, named, strict=True)]


def render_report(runs: Sequence[RunData], live: bool = False, title: str | None = None) -> str:
    """The HTML of the report of ``runs``: with several, the comparison sections first and
    each run's own sections folded below. ``title`` replaces the default heading."""
    page = Page()
    parts = [note(f"{run.name}: {text}") for run in runs for text in run.notes]
    if live:
        parts.append(note(f"training is running: this page reloads every {RELOAD_S} s", "live"))
    if len(runs) > 1:
        parts += [render_section(n, runs, page) for n, s in SECTIONS.items() if s.scope == "runs"]
    for run in runs:
        run.live = live
        parts.append(run_sections(run, page, folded=len(runs) > 1))
    if len(runs) == 1:
        heading, subtitle = f"tunelab report: {runs[0].name}", str(runs[0].path)
    else:
        heading = f"tunelab comparison of {len(runs)} runs"
        subtitle = ", ".join(r.name for r in runs)
    subtitle += f" · written {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return document(title or heading, subtitle, "".join(parts), live)


def run_sections(run: RunData, page: Page, folded: bool) -> str:
    """The ``run``-scope sections of one run (inside a closed ``<details>`` when ``folded``)."""
    body = "".join(render_section(n, run, page) for n, s in SECTIONS.items() if s.scope == "run")
    if not folded:
        return body
    summary = f"<summary>{esc(run.name)}: {esc(run.path)}</summary>"
    return f'<details data-run="{esc(run.name)}">{summary}{body}</details>'


def render_section(name: str, target: RunData | Sequence[RunData], page: Page) -> str:
    """One section's ``<section>`` element ('' when it has nothing to show); a section that
    fails on unexpected data becomes a note, so the rest of the report is still written."""
    section = SECTIONS[name]
    try:
        content = section.render(target, page)  # type: ignore[arg-type]
    except Exception as exc:  # a partial report is better than none
        content = note(f"this section could not be drawn ({type(exc).__name__}: {first_line(exc)})")
    if not content:
        return ""
    run = f' data-run="{esc(target.name)}"' if isinstance(target, RunData) else ""
    return (
        f'<section data-section="{esc(name)}"{run}><h2>{esc(section.title)}</h2>{content}</section>'
    )


@dataclass
class Written:
    """Where a report went and the notes about its runs (what could not be read)."""

    path: Path
    notes: list[str]


def write_runs(
    run_dirs: Sequence[str | Path],
    out_path: str | Path | None = None,
    live: bool = False,
    title: str | None = None,
) -> Written:
    """Write the report of ``run_dirs``; return where, with the notes shown on the page."""
    runs = load_runs(run_dirs)
    out = Path(out_path) if out_path is not None else default_output(run_dirs)
    if out.is_dir():
        raise TunelabError(f"-o {out}: a directory; give a file name, e.g. {out / REPORT_FILE}")
    atomic_write_text(out, render_report(runs, live, title))
    return Written(out, [f"{run.name}: {text}" for run in runs for text in run.notes])


def write_report(
    run_dirs: Sequence[str | Path],
    out_path: str | Path | None = None,
    live: bool = False,
    title: str | None = None,
) -> Path:
    """Write the report of ``run_dirs`` to ``out_path`` (default ``RUN_DIR/report.html`` for
    one run, ``./report.html`` for several); return its path. ``live``: the page reloads
    itself every few seconds (training still runs); ``title``: the page's heading."""
    return write_runs(run_dirs, out_path, live, title).path
