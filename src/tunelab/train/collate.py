"""Dynamic padding: each batch is padded to its own longest example (right padding)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

IGNORE_INDEX = -100


@dataclass
class PadCollator:
    """Collate tokenised examples into padded tensors.

    ``input_ids`` are padded with ``pad_token_id``, ``attention_mask`` and ``token_type_ids``
    with 0. Causal-LM ``labels`` (lists) are padded with -100; classification ``labels``
    (ints) are stacked.
    """

    pad_token_id: int

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(ex["input_ids"]) for ex in examples)
        pads = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
        batch = {
            key: _pad([ex[key] for ex in examples], length, value)
            for key, value in pads.items()
            if key in examples[0]
        }
        if "attention_mask" not in batch:
            batch["attention_mask"] = _pad(
                [[1] * len(ex["input_ids"]) for ex in examples], length, 0
            )
        if "labels" in examples[0]:
            labels = [ex["labels"] for ex in examples]
            if isinstance(labels[0], Sequence):
                batch["labels"] = _pad(labels, length, IGNORE_INDEX)
            else:
                batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch


def _pad(rows: Sequence[Sequence[int]], length: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out
