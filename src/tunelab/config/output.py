"""The ``output`` section: the run directory."""

from __future__ import annotations

from pydantic import Field

from tunelab.config.section import Section


class OutputConfig(Section):
    dir: str = Field(description="Run directory: everything the run writes goes here.")
