"""Length-grouped, seeded, resumable and shardable batching.

:class:`LengthGroupedBatchSampler` yields lists of dataset indices (use it as a DataLoader
``batch_sampler``). Per epoch: a seeded permutation is cut into megabatches of
``megabatch_size`` global batches; each megabatch is sorted by length (longest first) and cut
into global batches of ``batch_size x world_size`` examples; the batch order is shuffled,
keeping the batch with the longest example first (out-of-memory shows at step 1). With
``group_by_length=False`` batches are plain seeded random batches.

Each process takes an interleaved share (``global_batch[rank::world_size]``) of every global
batch, so the ranks see similar lengths in the same step. The same ``seed`` and ``epoch``
always give the same batches; ``start_batch`` resumes an epoch mid-way.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of similar-length examples for one process.

    Args:
        lengths: token length of every example (for packed rows: the row length).
        batch_size: examples per batch per process.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        group_by_length: sort within megabatches (False: plain random batches).
        megabatch_size: global batches per length-sorted megabatch.
        rank, world_size: this process and the number of processes.
        drop_last: drop a last global batch smaller than ``batch_size x world_size``; otherwise
            it is kept, padded by repeating its own examples so every rank gets some.
        start_batch: skip this many batches of the current epoch (resume).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        group_by_length: bool = True,
        megabatch_size: int = 50,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        start_batch: int = 0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.megabatch_size = megabatch_size
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.start_batch = start_batch
        self.epoch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (its seed) and the batch to start from."""
        self.epoch = epoch
        self.start_batch = start_batch

    def global_batches(self) -> list[list[int]]:
        """All global batches of the current epoch, in order (before sharding)."""
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        size = self.batch_size * self.world_size
        if self.group_by_length:
            mega = size * self.megabatch_size
            order = [
                i
                for m in range(0, len(order), mega)
                for i in sorted(order[m : m + mega], key=lambda i: -self.lengths[i])
            ]
        batches = [order[b : b + size] for b in range(0, len(order), size)]
        if batches and len(batches[-1]) < size:
            if self.drop_last:
                batches.pop()
            else:
                last = batches[-1]
                pad = -len(last) % self.world_size
                batches[-1] = last + [last[k % len(last)] for k in range(pad)]
        if self.group_by_length and batches:
            first = max(range(len(batches)), key=lambda b: self.lengths[batches[b][0]])
            head = batches.pop(first)
            rng.shuffle(batches)
            batches.insert(0, head)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches()[self.start_batch :]:
            yield batch[self.rank :: self.world_size]

    def __len__(self) -> int:
        n, size = len(self.lengths), self.batch_size * self.world_size
        total = n // size if self.drop_last else -(-n // size)
        return max(total - self.start_batch, 0)


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Fraction of token slots that are padding when each batch is padded to its longest."""
    slots = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / slots if slots else 0.0
