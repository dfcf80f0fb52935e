"""Padding-free packing for causal-LM training.

Several tokenised examples share one row of at most ``max_length`` tokens. Each example keeps
its own positions (``position_ids`` restart at 0) and attends only to itself through a 4D
block-diagonal causal mask ``[batch, 1, seq, seq]``: bool (True = attend) for ``sdpa``,
additive float (0 / dtype min) for ``eager``. Restarting positions alone does NOT isolate
examples under sdpa/eager; the mask does. For ``flash_attention_2`` no mask is built: the
kernel splits sequences from ``position_ids``.

The first token of every example gets label -100, so no token is ever predicted from the
previous example's last token; in an unpacked run that label is never used either, so the
sum of token losses and the loss-token count equal the unpacked run's.

Typical use (the training loop)::

    rows = pack_examples(ds["input_ids"], ds["labels"], max_length)
    collate = PackedCollator(model.config._attn_implementation, tokenizer.pad_token_id)
    loader = DataLoader(rows, batch_size=..., collate_fn=collate)
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import torch

IGNORE_INDEX = -100


class PackedRow(TypedDict):
    """One packed row: the concatenated examples and the length of each."""

    input_ids: list[int]
    labels: list[int]
    seq_lens: list[int]


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bin-pack item ``lengths`` into bins of ``capacity``; returns item indices per bin.

    Best-fit decreasing: items longest first, each into the open bin with the least room that
    still fits it (a new bin when none does). Deterministic for equal inputs; O(n log n).
    Raises ValueError for an item longer than ``capacity`` or not positive.
    """
    bad = [n for n in lengths if n <= 0 or n > capacity]
    if bad:
        raise ValueError(f"example lengths must be in 1..{capacity}; got {bad[0]}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), kept sorted
    for i in order:
        size = lengths[i]
        pos = bisect.bisect_left(free, (size, -1))
        if pos == len(free):
            bins.append([i])
            room, b = capacity - size, len(bins) - 1
        else:
            room, b = free.pop(pos)
            bins[b].append(i)
            room -= size
        if room > 0:
            bisect.insort(free, (room, b))
    return bins


def packing_efficiency(lengths: Sequence[int], bins: Sequence[Sequence[int]], slots: int) -> float:
    """Real tokens / token slots, where ``slots`` is the bin capacity (row length)."""
    if not bins:
        return 0.0
    return sum(lengths[i] for b in bins for i in b) / (len(bins) * slots)


def pack_examples(
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    max_length: int,
) -> list[PackedRow]:
    """Pack tokenised examples into rows of at most ``max_length`` tokens (best-fit decreasing).

    ``labels`` are per example, aligned with ``input_ids`` (-100 where no loss is taken). The
    first label of every example is set to -100 so labels never cross example boundaries.
    Empty examples are dropped. Rows come out in bin order (longest-first); shuffle them with
    the sampler.
    """
    keep = [i for i, ids in enumerate(input_ids) if len(ids) > 0]
    lengths = [len(input_ids[i]) for i in keep]
    rows: list[PackedRow] = []
    for bin_items in best_fit_decreasing(lengths, max_length):
        row: PackedRow = {"input_ids": [], "labels": [], "seq_lens": []}
        for j in bin_items:
            ids, lab = input_ids[keep[j]], labels[keep[j]]
            if len(lab) != len(ids):
                raise ValueError("input_ids and labels of an example differ in length")
            row["input_ids"].extend(ids)
            row["labels"].append(IGNORE_INDEX)
            row["labels"].extend(lab[1:])
            row["seq_lens"].append(len(ids))
        rows.append(row)
    return rows


def rows_efficiency(rows: Sequence[PackedRow], max_length: int) -> float:
    """Packing efficiency of packed rows: real tokens / (rows x ``max_length``)."""
    if not rows:
        return 0.0
    return sum(len(r["input_ids"]) for r in rows) / (len(rows) * max_length)


def block_causal_mask(
    seq_lens: Sequence[Sequence[int]],
    length: int,
    kind: str = "bool",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """4D block-diagonal causal mask ``[batch, 1, length, length]`` for packed rows.

    ``seq_lens[b]`` are the example lengths of row ``b``; positions after them (padding) are
    given their own one-token block, so no row of the mask is fully masked. ``kind``: "bool"
    (True = attend, for sdpa) or "float" (additive: 0 attend, ``finfo(dtype).min`` masked,
    for eager).
    """
    if kind not in ("bool", "float"):
        raise ValueError(f"mask kind must be 'bool' or 'float', not {kind!r}")
    doc = torch.stack([_segment_ids(lens, length) for lens in seq_lens])  # [B, L]
    same = doc[:, :, None] == doc[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    mask = (same & causal)[:, None]
    if kind == "bool":
        return mask
    out = torch.zeros(mask.shape, dtype=dtype)
    return out.masked_fill_(~mask, torch.finfo(dtype).min)


def position_ids_for(seq_lens: Sequence[int], length: int) -> torch.Tensor:
    """Positions restarting at 0 for each example; padding positions are 0."""
    pos = torch.zeros(length, dtype=torch.long)
    start = 0
    for n in seq_lens:
        pos[start : start + n] = torch.arange(n)
        start += n
    return pos


def _segment_ids(seq_lens: Sequence[int], length: int) -> torch.Tensor:
    """Example index per position; each padding position gets a unique negative id."""
    seg = -torch.arange(1, length + 1)
    start = 0
    for k, n in enumerate(seq_lens):
        seg[start : start + n] = k
        start += n
    if start > length:
        raise ValueError(f"row holds {start} tokens, more than length {length}")
    return seg


def mask_kind_for(attn_implementation: str | None) -> str | None:
    """Mask kind for an attention implementation: "bool" (sdpa), "float" (eager), None (flash)."""
    impl = attn_implementation or "sdpa"
    if "flash" in impl:
        return None
    if impl == "eager":
        return "float"
    if impl == "sdpa":
        return "bool"
    raise ValueError(f"packing does not support attention implementation {impl!r}")


@dataclass
class PackedCollator:
    """Collate packed rows into ``input_ids``, ``labels``, ``position_ids``, ``attention_mask``.

    Rows are right-padded to the longest row in the batch, rounded up to ``pad_to_multiple_of``.
    ``attention_mask`` is the 4D block-diagonal causal mask for ``attn_implementation`` (the
    model's ``config._attn_implementation``), in ``mask_dtype`` for eager; it is omitted for
    flash attention, which reads example boundaries from ``position_ids``.
    """

    attn_implementation: str | None
    pad_token_id: int
    pad_to_multiple_of: int = 1
    mask_dtype: torch.dtype = torch.float32

    def __call__(self, rows: Sequence[PackedRow]) -> dict[str, torch.Tensor]:
        longest = max(len(r["input_ids"]) for r in rows)
        m = self.pad_to_multiple_of
        length = -(-longest // m) * m
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        for b, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[b, :n] = torch.tensor(r["input_ids"], dtype=torch.long)
            labels[b, :n] = torch.tensor(r["labels"], dtype=torch.long)
        batch = {
            "input_ids": ids,
            "labels": labels,
            "position_ids": torch.stack([position_ids_for(r["seq_lens"], length) for r in rows]),
        }
        kind = mask_kind_for(self.attn_implementation)
        if kind is not None:
            seq_lens = [r["seq_lens"] for r in rows]
            batch["attention_mask"] = block_causal_mask(seq_lens, length, kind, self.mask_dtype)
        return batch
