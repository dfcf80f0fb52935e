"""What a plan holds: the data's shape, the traced candidates and the table rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tunelab.plan.estimate import Shape
from tunelab.plan.hardware import Hardware
from tunelab.plan.trace import StepTrace


@dataclass(frozen=True)
class DataShape:
    """Token lengths of the train split (after the data pipeline)."""

    examples: int
    max_length: int  # longest example: the padded length of the peak batch
    mean_length: float  # what an average (length-grouped) batch is padded to
    loss_tokens: int  # loss positions of the longest example


@dataclass
class Candidate:
    """One method (with its settings) traced on the real model."""

    label: str  # e.g. lora, lora+nf4
    method: dict[str, Any]  # the method section to train it (``method:`` in the config)
    shape: Shape
    trainable_params: int
    total_params: int
    extra_params: int  # parameters the method adds to the model
    artifact_mb: float
    traces: dict[tuple[str, bool, int], StepTrace] = field(default_factory=dict)
    probe: dict[str, Any] | None = None  # the probe's fit (see tunelab.plan.probe)


@dataclass(frozen=True)
class Row:
    """One configuration of the table."""

    method: str
    precision: str
    gradient_checkpointing: bool
    loss_chunk_size: int
    micro_batch: int
    gradient_accumulation_steps: int
    peak_memory_mb: float
    step_time_s: float
    epoch_time_s: float
    trainable_params: int
    artifact_mb: float
    fits: bool
    timed_by: str  # flops | probe
    breakdown_mb: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    """The rows over methods x precision x checkpointing x micro-batch, and their context."""

    hardware: Hardware
    budget_mb: float
    budget_source: str  # --memory-budget | train.memory_budget | free memory
    effective_batch: int
    data: DataShape
    base_mb: float
    rows: list[Row]
    candidates: list[Candidate]
    skipped: dict[str, str]  # method -> why it does not apply
    probe_measured: dict[str, float] = field(default_factory=dict)  # method -> probe peak MB

    def fitting(self) -> list[Row]:
        return [row for row in self.rows if row.fits]

    def smallest(self) -> Row:
        return min(self.rows, key=lambda row: row.peak_memory_mb)
