"""What a report section is: a name, a title, a scope and a render function.

``scope="run"`` sections render once per run (given that run); ``scope="runs"`` sections
render once for a comparison of several runs (given all of them). A section returns its
HTML (built with :class:`tunelab.report.page.Page`), or None when the run has nothing for it
(e.g. no predictions yet); then the section is left out of the page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from tunelab.report.page import Page
from tunelab.report.rundata import RunData

Scope = Literal["run", "runs"]
RenderRun = Callable[[RunData, Page], "str | None"]
RenderRuns = Callable[[Sequence[RunData], Page], "str | None"]


@dataclass(frozen=True)
class Section:
    """One part of the report.

    Attributes:
        name: short id (the ``data-section`` attribute of its ``<section>`` element).
        title: the heading shown on the page.
        scope: ``run`` (rendered for each run) or ``runs`` (once, for several runs).
        render: ``render(run, page)`` for ``run`` scope, ``render(runs, page)`` for ``runs``.
    """

    name: str
    title: str
    scope: Scope
    render: RenderRun | RenderRuns
