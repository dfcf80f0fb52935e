"""One dataset's training rows: as tokenised, or packed (``train.packing``), with their collate
function and lengths (for the length-grouped sampler)."""

from __future__ import annotations

from typing import Any

from torch import nn

from tunelab.config import RunConfig
from tunelab.modalities.registry import modality_for
from tunelab.train.collate import PadCollator


def training_rows(
    cfg: RunConfig, dataset: Any, model: nn.Module, pad_token_id: int
) -> tuple[Any, Any, list[int]]:
    """``(rows, collate, lengths)`` of ``dataset`` (packed into ``data.max_length`` rows for
    ``train.packing``; a non-text format: its modality's augmenting collator)."""
    if modality_for(cfg.data.format) is not None:
        return dataset, modal_collator(cfg, train=True), [1] * len(dataset)
    if cfg.train.packing:
        from tunelab.train.packing import PackedCollator, pack_examples

        rows: Any = pack_examples(dataset["input_ids"], dataset["labels"], cfg.data.max_length)
        attn = getattr(getattr(model, "config", None), "_attn_implementation", None)
        return rows, PackedCollator(attn, pad_token_id), [len(row["input_ids"]) for row in rows]
    return dataset, PadCollator(pad_token_id), [len(ids) for ids in dataset["input_ids"]]


def validation_collate(cfg: RunConfig, pad_token_id: int) -> Any:
    """The collate function of validation batches (a modality's, without augmentation)."""
    if modality_for(cfg.data.format) is not None:
        return modal_collator(cfg, train=False)
    return PadCollator(pad_token_id)


def modal_collator(cfg: RunConfig, train: bool) -> Any:
    """The collator of a non-text format, with the model's processor."""
    from tunelab.models import load_processor

    modality = modality_for(cfg.data.format)
    processor = load_processor(cfg.model, cfg.data.format, cfg.data)
    return modality.collator(processor, cfg.data, train)
