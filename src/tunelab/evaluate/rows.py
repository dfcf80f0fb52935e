"""The rows an evaluation reads: a seeded sample of a split, and its padded tensor batches."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tunelab.train.collate import PadCollator

if TYPE_CHECKING:
    from tunelab.data import PreparedData

_TENSOR_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def limited_rows(
    prepared: PreparedData, split: str, max_samples: int | None
) -> tuple[Any, list[dict[str, Any]]]:
    """The split's tokenised rows and canonical examples; at most ``max_samples`` of them.

    The subset is a seeded random sample (kept in split order), not the first rows, so it
    stays representative when a split is ordered by label.
    """
    dataset, examples = prepared.splits[split], prepared.examples[split]
    if max_samples is not None and max_samples < len(examples):
        chosen = sorted(random.Random(0).sample(range(len(examples)), max_samples))
        dataset, examples = dataset.select(chosen), [examples[i] for i in chosen]
    return dataset, examples


def tensor_batches(
    dataset: Any, batch_size: int, pad_token_id: int, collate: Any = None
) -> Iterator[dict]:
    """Padded tensor batches of the tokenised rows, in order; ``collate``: a modality's
    collator over every column (pixel inputs), instead of padding the token columns."""
    columns = [c for c in _TENSOR_COLUMNS if c in dataset.column_names]
    if collate is not None:
        columns = list(dataset.column_names)
    collate = collate or PadCollator(pad_token_id)
    for start in range(0, len(dataset), batch_size):
        chunk = dataset[start : start + batch_size]
        rows = [
            dict(zip(columns, values, strict=True))
            for values in zip(*(chunk[c] for c in columns), strict=True)
        ]
        yield collate(rows)
