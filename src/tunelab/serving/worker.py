"""The batching worker: one thread that schedules queued jobs onto the engine.

Requests wait in a bounded queue (a full queue is refused at once, never piled up). Generation
jobs on a model that supports it decode by continuous batching
(:class:`~tunelab.serving.continuous.Running`): between two decoding steps the worker admits
the jobs at the head of the queue that fit in ``max_rows`` rows and run on the same model (any
mix of its LoRA adapters), and finished rows leave, so a request never waits for another to
end. Anything else (classification, prompt or prefix tuning, DoRA, another model) waits until
the running batch has drained and then runs as one batch (:meth:`Engine.run`), jobs in
arrival order. ``stop`` lets the queued jobs finish, then ends the thread.

Test hook: ``TUNELAB_TEST_STEP_SECONDS=S`` makes every decoding step of a continuous batch
take ``S`` seconds longer, as a slower device would, so that tests of queueing and
disconnects see a request wait whatever the speed of the machine.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable

from tunelab.errors import first_line
from tunelab.serving.continuous import Running
from tunelab.serving.engine import Engine, continuous
from tunelab.serving.jobs import Job

STEP_DELAY_ENV = "TUNELAB_TEST_STEP_SECONDS"


class QueueFull(Exception):
    """The queue holds ``max_queue`` jobs already."""


class Worker:
    """A bounded job queue and the thread that decodes its jobs."""

    def __init__(
        self,
        engine: Engine,
        max_queue: int = 64,
        max_rows: int = 16,
        window_s: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.engine, self.max_queue, self.max_rows = engine, max_queue, max_rows
        self.window_s = window_s
        self.on_batch = on_batch or (lambda rows: None)  # rows decoded together, per step
        self.pending: deque[Job] = deque()
        self.ready = threading.Condition()
        self.stopping = False
        self.running: Running | None = None
        self.batch_rows = 0  # rows of a per-batch run in progress
        self.thread = threading.Thread(target=self._loop, name="tunelab-serve-worker", daemon=True)
        self.step_delay = float(os.environ.get(STEP_DELAY_ENV) or 0)  # the test hook

    def start(self) -> None:
        self.thread.start()

    def submit(self, job: Job) -> None:
        """Queue ``job``; raises :class:`QueueFull` when ``max_queue`` jobs already wait for a
        row. Jobs that the batch's free rows take at its next step do not count: two requests
        sent together to an idle server with one row and a one-job queue are both taken, even
        though the first is still in the queue when the second arrives."""
        with self.ready:
            free_rows = max(0, self.max_rows - self.busy)
            if len(self.pending) >= self.max_queue + free_rows:
                raise QueueFull
            self.pending.append(job)
            self.ready.notify()

    @property
    def waiting(self) -> int:
        """Jobs in the queue (not yet decoding)."""
        return len(self.pending)

    @property
    def busy(self) -> int:
        """Rows decoding now."""
        running = self.running
        return len(running) if running is not None else self.batch_rows

    def stop(self, timeout: float | None = None) -> None:
        """Finish the queued jobs, then end the thread."""
        with self.ready:
            self.stopping = True
            self.ready.notify()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def _loop(self) -> None:
        while True:
            if self.running is None:
                if not self._wait_for_work():
                    return
                self._begin()
            else:
                self._admit()
                self._step()

    def _wait_for_work(self) -> bool:
        """Block until a job waits (then gather for ``window_s``); False: stopped and drained."""
        with self.ready:
            while not self.pending:
                if self.stopping:
                    return False
                self.ready.wait()
            deadline = time.monotonic() + self.window_s
            while sum(job.rows for job in self.pending) < self.max_rows and not self.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.ready.wait(left)
        return True

    def _begin(self) -> None:
        """Start a continuous batch for the head job, or run the head's jobs as one batch."""
        with self.ready:
            head = self.pending[0]
        if continuous(head):
            self.running = head.slot.running()
            self._admit()
            if self.running is not None and not self.running:
                self.running = None
            return
        batch = self._take(lambda job: not continuous(job))
        self.batch_rows = sum(job.rows for job in batch)
        self.on_batch(self.batch_rows)
        try:
            self.engine.run(batch)
        finally:
            self.batch_rows = 0

    def _take(self, fits: Callable[[Job], bool], rows: int = 0) -> list[Job]:
        """Jobs from the head of the queue while ``fits`` holds and ``max_rows`` allows (the
        first one always); cancelled jobs are dropped."""
        taken: list[Job] = []
        with self.ready:
            while self.pending:
                job = self.pending[0]
                if job.cancelled.is_set():
                    self.pending.popleft()
                    continue
                if not fits(job) or (rows and rows + job.rows > self.max_rows):
                    break
                taken.append(self.pending.popleft())
                rows += job.rows
        return taken

    def _admit(self) -> None:
        """Join the queue's head jobs on the running batch's model (prefilled together)."""
        running = self.running
        assert running is not None
        model = running.model
        jobs = self._take(lambda job: _on(job, model), len(running))
        choices = [choice for job in jobs for choice in job.choices]
        if not choices:
            return
        try:
            running.admit(choices)
        except Exception as exc:  # a failed prefill fails its own jobs only
            _fail(jobs, exc)

    def _step(self) -> None:
        """One decoding step of the running batch; a failure fails its jobs."""
        running = self.running
        assert running is not None
        if running:
            self.on_batch(len(running))
            try:
                running.step()
            except Exception as exc:  # a failed step must not stop the server
                _fail(list({id(c.job): c.job for c in running.fail()}.values()), exc)
            if self.step_delay:
                time.sleep(self.step_delay)
        if not running:
            self.running = None


def _on(job: Job, model: object) -> bool:
    """Whether ``job`` can join a continuous batch on ``model``."""
    return continuous(job) and job.slot.loaded.model is model


def _fail(jobs: list[Job], exc: Exception) -> None:
    for job in jobs:
        job.fail(f"generation failed: {first_line(exc)}")
