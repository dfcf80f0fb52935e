"""The ``stages`` section: a run trained in stages, each overriding ``method``, ``train``, ``data``.

Each entry is a ``name`` plus raw overrides of those three sections, merged over the
top-level config when the stages are resolved (:mod:`tunelab.config.stage_plan`, which
also names any other key, an empty list and bad values as ``stages[i].key``).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from tunelab.config.section import Section

STAGE_SECTIONS = ("method", "train", "data")
"""The sections a stage may override."""


class StageConfig(Section):
    """One training stage: its name and what it changes in ``method``, ``train`` and ``data``."""

    model_config = ConfigDict(extra="allow")  # other keys: one clear line from stage_plan

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Stage name (letters, digits, '_', '-', '.'): in metrics, logs, the summary "
        "and the stage's folder RUN_DIR/stages/N-NAME.",
    )
    method: dict[str, Any] = Field(
        default_factory=dict,
        description="Method for this stage: a different name replaces the top-level method, "
        "the same name merges these settings over it.",
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="train.* keys this stage overrides (lr, epochs, ...)."
    )
    data: dict[str, Any] = Field(
        default_factory=dict, description="data.* keys this stage overrides (a curriculum)."
    )
