"""Data format -> modality module, imported on first use (one entry per format).

Everything else asks :func:`modality_for`; ``None`` means a text format, whose code paths
stay as they are. :func:`format_task` is import-light (the config uses it).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from tunelab.modalities.base import Modality


class Entry(NamedTuple):
    """One non-text format: its module (defining ``MODALITY``), the model task it trains,
    the data format whose ``eval.metrics`` it scores with (itself when it has its own) and
    what its training throughput counts (``examples`` for inputs without tokens: see
    ``tunelab.train.objective.input_tokens``)."""

    module: str
    task: str
    metrics: str
    throughput: str = "tokens"


MODALITIES: dict[str, Entry] = {
    "image_classification": Entry(
        "tunelab.modalities.image_classification", "classification", "classification", "examples"
    ),
    "speech": Entry("tunelab.modalities.speech", "speech_to_text", "speech", "examples"),
    "image_chat": Entry("tunelab.modalities.image_chat", "causal_lm", "qa"),
}


def format_task(fmt: str) -> str:
    """The model task a data format trains: ``classification``, ``causal_lm`` or a modality's."""
    if fmt in MODALITIES:
        return MODALITIES[fmt].task
    return "classification" if fmt == "classification" else "causal_lm"


def throughput_unit(fmt: str | None) -> str:
    """What training throughput counts for data format ``fmt``: ``tokens`` or ``examples``."""
    return MODALITIES[fmt].throughput if fmt in MODALITIES else "tokens"


def metrics_format(fmt: str) -> str:
    """The data format whose metrics (``eval.metrics``) apply to ``fmt``."""
    return MODALITIES[fmt].metrics if fmt in MODALITIES else fmt


@cache
def modality_for(fmt: str | None) -> Modality | None:
    """The modality of a non-text data format (its module's ``MODALITY``); None for text."""
    if fmt not in MODALITIES:
        return None
    return importlib.import_module(MODALITIES[fmt].module).MODALITY
