"""A finding of ``tunelab doctor``: what is wrong, the evidence, and the config change to try."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """One diagnosis: ``code`` (stable name), ``title``, ``evidence`` (steps and values),
    ``fix`` (the concrete config change), ``severity`` and the ``steps`` it points at."""

    code: str
    title: str
    evidence: str
    fix: str
    severity: Severity = "warning"
    steps: tuple[int, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": list(self.steps)}


def list_steps(steps: list[int], shown: int = 8) -> str:
    """``3, 7, 9 and 4 more``."""
    text = ", ".join(str(s) for s in steps[:shown])
    return text + (f" and {len(steps) - shown} more" if len(steps) > shown else "")
