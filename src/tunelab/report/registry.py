"""The report's sections in page order: one line each.

A new section is one module with a render function plus one line here (outside tunelab:
``register(Section(...))``). ``scope="run"`` sections show each run; ``scope="runs"`` the
comparison of several runs, above the runs' own sections.
"""

from __future__ import annotations

from tunelab.report.section import Section
from tunelab.report.sections import (
    attention,
    comparison,
    curves,
    data,
    evaluation,
    overlay,
    prompting,
    summary,
)

SECTIONS: dict[str, Section] = {}


def register(section: Section, before: str | None = None) -> None:
    """Add ``section`` at the end (or before the section named ``before``)."""
    if section.name in SECTIONS:
        raise ValueError(f"a report section named {section.name!r} is already registered")
    items = list(SECTIONS.items())
    index = [name for name, _ in items].index(before) if before in SECTIONS else len(items)
    items.insert(index, (section.name, section))
    SECTIONS.clear()
    SECTIONS.update(items)


for _section in (
    Section("comparison", "Comparison", "runs", comparison.render),
    Section("overlay", "Curves of every run", "runs", overlay.render),
    Section("summary", "Summary", "run", summary.render),
    Section("curves", "Training curves", "run", curves.render),
    Section("evaluation", "Evaluation", "run", evaluation.render),
    Section("prompting", "Prompting vs fine-tuning", "run", prompting.render),
    Section("attention", "Attention", "run", attention.render),
    Section("data", "Data", "run", data.render),
):
    register(_section)
