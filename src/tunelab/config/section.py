"""What every config section shares: the pydantic base, the field types and the task names.

Method settings blocks (defined next to each method in :mod:`tunelab.methods`) use the same
base, so unknown keys are errors and defaults are validated everywhere.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["classification", "causal_lm", "speech_to_text"]
DataFormat = Literal[
    "classification",
    "instruction",
    "chat",
    "qa",
    "text",
    "image_classification",
    "image_chat",
    "speech",
]
PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def check_regexes(patterns: Any) -> Any:
    """Return ``patterns`` (regexes, or None); raise ValueError naming an invalid one."""
    for pattern in patterns or ():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regex ({exc})") from None
    return patterns


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True, use_attribute_docstrings=True)


_UNITS = {"": 1.0, "mb": 1.0, "m": 1.0, "mib": 1.0, "gb": 1024.0, "g": 1024.0, "gib": 1024.0}
_MEMORY = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_memory_mb(value: str | float) -> float:
    """Megabytes (MiB) in ``value``: a number of MB, or ``800MB`` / ``6GB`` / ``6 GiB``."""
    match = _MEMORY.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a memory size; write e.g. 800MB or 6GB")
    return float(match.group(1)) * _UNITS[unit]
