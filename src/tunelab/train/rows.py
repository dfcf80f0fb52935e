"""One dataset's training rows: as tokenised, or packed (``train.packing``), with their collate
function and lengths (for the length-grouped sampler)."""

from __future__ import annotations

from typing import Any

from torch import nn

from tunelab.config import RunConfig
from tunelab.train.collate import PadCollator


def training_rows(
    cfg: RunConfig, dataset: Any, model: nn.Module, pad_token_id: int
) -> tuple[Any, Any, list[int]]:
    """``(rows, collate, lengths)`` of ``dataset`` (packed into ``data.max_length`` rows for
    ``train.packing``)."""
    if cfg.train.packing:
        from tunelab.train.packing import PackedCollator, pack_examples

        rows: Any = pack_examples(dataset["input_ids"], dataset["labels"], cfg.data.max_length)
        attn = getattr(getattr(model, "config", None), "_attn_implementation", None)
        return rows, PackedCollator(attn, pad_token_id), [len(row["input_ids"]) for row in rows]
    return dataset, PadCollator(pad_token_id), [len(ids) for ids in dataset["input_ids"]]
