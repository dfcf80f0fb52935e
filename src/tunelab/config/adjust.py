"""``train.on_oom`` and ``train.instability``: what the loop does when a step runs out of
memory or training turns unstable (see ``tunelab.train.oom`` and ``tunelab.train.instability``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunelab.config.section import PositiveInt, Section

OnOom = Literal["adapt", "stop"]


class InstabilityConfig(Section):
    action: Literal["stop", "rollback"] = Field(
        default="stop",
        description="stop: a non-finite loss or gradient stops the run with advice (or is "
        "skipped with train.skip_nonfinite); rollback: a non-finite step or a spike restores "
        "the last good trainable weights and optimizer state, lowers the LR and continues.",
    )
    spike_factor: float | None = Field(
        default=3.0,
        gt=1,
        description="rollback: a loss above this times the median of the last `window` good "
        "steps is a spike (null: loss spikes are not checked).",
    )
    grad_spike_factor: float | None = Field(
        default=10.0,
        gt=1,
        description="rollback: a gradient norm (before clipping) above this times the recent "
        "median is a spike (null: not checked).",
    )
    window: int = Field(
        default=20, ge=3, description="Good steps whose median a spike is measured against."
    )
    min_history: int = Field(
        default=5, ge=1, description="Good steps seen before spikes are judged at all."
    )
    lr_factor: float = Field(
        default=0.5, gt=0, lt=1, description="Each rollback multiplies the learning rate by this."
    )
    max_rollbacks: PositiveInt = Field(
        default=3, description="Stop with a diagnosis at the instability after this many rollbacks."
    )
    snapshot_every: PositiveInt = Field(
        default=5,
        description="Copy the trainable weights and optimizer state to CPU every N steps "
        "(a rollback returns to the newest copy a later good step confirmed).",
    )
