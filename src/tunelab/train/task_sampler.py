"""Task mixing: which task each batch comes from, seeded and resumable.

Every batch holds one task. Task ``i`` (``n_i`` training rows, sampling weight ``w_i``) is
drawn with probability

- ``proportional``: ``p_i = n_i / sum_j n_j``
- ``weights``:      ``p_i = w_i / sum_j w_j``
- ``temperature``:  ``p_i = n_i^(1/T) / sum_j n_j^(1/T)`` (``T = 1`` is proportional; a large
  ``T`` tends to uniform)

An epoch is as many batches as all tasks hold together. Epoch ``e``'s task sequence is drawn
from ``random.Random(seed * 1_000_003 + e)``; each task walks through its own
length-grouped batches (:class:`tunelab.train.sampler.LengthGroupedBatchSampler`, its own
epochs when it runs out). So the position (epoch, batch) fixes every task's position, which
:meth:`TaskBatchSampler.state_dict` saves in each checkpoint and resume checks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler

from tunelab.errors import TunelabError
from tunelab.train.sampler import LengthGroupedBatchSampler


def mixing_probabilities(
    sizes: Sequence[int], rule: str, weights: Sequence[float], temperature: float
) -> list[float]:
    """The probability of drawing each task (see the module docstring for the formulas)."""
    if rule == "weights":
        raw = [float(w) for w in weights]
    elif rule == "temperature":
        raw = [float(n) ** (1.0 / temperature) for n in sizes]
    else:
        raw = [float(n) for n in sizes]
    total = sum(raw)
    return [value / total for value in raw]


class TaskBatchSampler(Sampler[list[int]]):
    """Task-homogeneous batches of indices into the tasks' rows laid end to end."""

    def __init__(
        self,
        samplers: Sequence[LengthGroupedBatchSampler],
        probabilities: Sequence[float],
        seed: int,
    ) -> None:
        self.samplers = list(samplers)
        self.probabilities = list(probabilities)
        self.seed = seed
        self.offsets = [0]
        for sampler in self.samplers[:-1]:
            self.offsets.append(self.offsets[-1] + len(sampler.lengths))
        self.sizes = [len(s) + s.start_batch for s in self.samplers]  # batches per task epoch
        self.epoch = 0
        self.start_batch = 0
        self._cache: dict[tuple[int, int], list[list[int]]] = {}

    def epoch_tasks(self, epoch: int) -> list[int]:
        """The task of every batch of ``epoch``."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        tasks = range(len(self.samplers))
        return rng.choices(tasks, weights=self.probabilities, k=sum(self.sizes))

    def task_positions(self, epoch: int, start_batch: int) -> list[int]:
        """Batches each task has given before batch ``start_batch`` of ``epoch``."""
        counts = [0] * len(self.samplers)
        for past in range(epoch):
            for task in self.epoch_tasks(past):
                counts[task] += 1
        for task in self.epoch_tasks(epoch)[:start_batch]:
            counts[task] += 1
        return counts

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _task_batches(self, task: int, task_epoch: int) -> list[list[int]]:
        key = (task, task_epoch)
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != task}
            sampler = self.samplers[task]
            sampler.set_epoch(task_epoch, 0)
            self._cache[key] = [[i + self.offsets[task] for i in b] for b in sampler]
        return self._cache[key]

    def __iter__(self) -> Iterator[list[int]]:
        counts = self.task_positions(self.epoch, self.start_batch)
        for task in self.epoch_tasks(self.epoch)[self.start_batch :]:
            size = self.sizes[task]
            yield self._task_batches(task, counts[task] // size)[counts[task] % size]
            counts[task] += 1

    def __len__(self) -> int:
        return max(sum(self.sizes) - self.start_batch, 0)

    def state_dict(self, epoch: int, batch: int) -> dict[str, list[int]]:
        """Each task's batch count at (``epoch``, ``batch``): saved in every checkpoint."""
        return {"task_batches": self.task_positions(epoch, batch)}

    def check_state(self, state: dict[str, list[int]], epoch: int, batch: int) -> None:
        """Refuse a checkpoint whose task positions this sampler would not reach."""
        if state != self.state_dict(epoch, batch):
            raise TunelabError(
                f"the checkpoint's task positions {state['task_batches']} differ from this "
                f"config's {self.state_dict(epoch, batch)['task_batches']}; restore data.tasks "
                "and data.mixing to resume, or pass --no-resume"
            )
