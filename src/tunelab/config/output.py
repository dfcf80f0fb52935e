"""The ``output`` section: the run directory."""

from __future__ import annotations

from pydantic import Field

from tunelab.config.section import Section


class OutputConfig(Section):
    dir: str = Field(description="Run directory: everything the run writes goes here.")
    report: bool = Field(
        True,
        description="Write report.html (curves, evaluation, data) into the run directory at "
        "each validation and at the end; `tunelab report RUN_DIR` writes it on demand.",
    )
    attention_examples: int = Field(
        2,
        ge=0,
        description="Validation examples whose attention maps (fine-tuned and base model, "
        "every layer and head) the report shows; read once at the end of training into "
        "attention.json. 0: none.",
    )
