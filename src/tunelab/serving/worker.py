"""The batching worker: one thread that takes queued jobs in batches and runs them.

Requests wait in a bounded queue (a full queue is refused at once, never piled up). The worker
blocks for the first job, then gathers whatever else arrives within ``window_s`` up to
``max_rows`` decoded rows, and hands the batch to the engine: concurrent requests, for
any mix of adapters, decode together. ``stop`` lets the queued jobs finish, then ends the thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from tunelab.serving.jobs import Job

_STOP = object()


class QueueFull(Exception):
    """The queue holds ``max_queue`` jobs already."""


class Worker:
    """A bounded job queue and the thread that runs its jobs in batches."""

    def __init__(
        self,
        run: Callable[[list[Job]], None],
        max_queue: int = 64,
        max_rows: int = 16,
        window_s: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run, self.max_rows, self.window_s = run, max_rows, window_s
        self.on_batch = on_batch or (lambda rows: None)
        self.jobs: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self.busy = 0  # rows of the batch now running
        self.thread = threading.Thread(target=self._loop, name="tunelab-serve-worker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, job: Job) -> None:
        """Queue ``job``; raises :class:`QueueFull` when there is no room."""
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull from None

    @property
    def waiting(self) -> int:
        """Jobs in the queue (not yet in a batch)."""
        return self.jobs.qsize()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the queued jobs, then end the thread."""
        if self.thread.is_alive():
            self.jobs.put(_STOP)
            self.thread.join(timeout)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self.jobs.get()
            if first is _STOP:
                return
            batch, stopping = self._gather(first)
            self.busy = sum(job.rows for job in batch)
            self.on_batch(self.busy)
            try:
                self.run(batch)
            finally:
                self.busy = 0

    def _gather(self, first: object) -> tuple[list[Job], bool]:
        """The first job and those that follow within the window, up to ``max_rows`` rows."""
        assert isinstance(first, Job)
        batch, rows = [first], first.rows
        deadline = time.monotonic() + self.window_s
        while rows < self.max_rows:
            try:
                item = self.jobs.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            assert isinstance(item, Job)
            batch.append(item)
            rows += item.rows
        return batch, False
