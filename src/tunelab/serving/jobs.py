"""One request's work for the batching worker: a ``Job`` and the ``Choice`` rows it decodes.

A generation job holds its prompts' token ids and ``n`` choices per prompt; the worker decodes
the choices of many jobs in one batch and calls :meth:`Choice.watch` after every step. The
watch turns new tokens into text deltas (held back while they could still become a stop
string or an incomplete character), stops a row at a stop token, a stop string, its own
``max_tokens`` or when its request was cancelled, and sends each event to the job's ``sink``
(the server's event queue, or the terminal for ``tunelab chat``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tunelab.decoding import Sampling

if TYPE_CHECKING:
    from tunelab.serving.engine import Slot

Kind = Literal["generate", "classify"]


@dataclass(frozen=True)
class Delta:
    """New text of one choice."""

    index: int
    text: str


@dataclass(frozen=True)
class Finish:
    """A choice is done: why (``stop``, ``length``, ``cancelled``) and its token count."""

    index: int
    reason: str
    tokens: int


@dataclass(frozen=True)
class Classified:
    """The results of a classification job: one {label, probabilities} per input."""

    results: list[dict[str, Any]]


@dataclass(frozen=True)
class Failed:
    """The job failed inside the worker (a message for the client)."""

    message: str


Event = Delta | Finish | Classified | Failed


@dataclass
class Job:
    """A request for the worker. ``sink`` receives its events, from the worker's thread."""

    slot: Slot
    kind: Kind
    sink: Callable[[Event], None]
    prompts: list[list[int]] = field(default_factory=list)
    inputs: list[Any] = field(default_factory=list)
    n: int = 1
    max_tokens: int = 16
    sampling: Sampling = field(default_factory=Sampling)
    stop: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # a chat prompt's image data URLs
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)
    choices: list[Choice] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        for p, prompt in enumerate(self.prompts):
            for k in range(self.n):
                index = p * self.n + k
                seed = self.sampling.seed
                rule = Sampling(
                    self.sampling.temperature,
                    self.sampling.top_p,
                    None if seed is None else (seed + index) % 2**63,
                )
                self.choices.append(Choice(self, index, prompt, rule))

    @property
    def rows(self) -> int:
        """Rows this job adds to a batch."""
        return len(self.choices) if self.kind == "generate" else len(self.inputs)

    def fail(self, message: str) -> None:
        """Report a failure and close every open choice."""
        self.sink(Failed(message))
        for choice in self.choices:
            choice.done = True


@dataclass
class Choice:
    """One decoded row: its prompt, its sampling, and what was already sent."""

    job: Job
    index: int
    prompt: list[int]
    sampling: Sampling
    sent: str = ""
    done: bool = False

    def watch(self, new: list[int]) -> bool:
        """Look at the row's new tokens after a step; True when the row is finished."""
        if self.done:
            return True
        if self.job.cancelled.is_set():
            self._finish("", "cancelled", len(new))
            return True
        stops = self.job.slot.stop_ids
        cut = next((i for i, token in enumerate(new) if token in stops), None)
        body = new if cut is None else new[:cut]
        text = self.job.slot.loaded.tokenizer.decode(body, skip_special_tokens=True)
        reason, text = _stop_string(text, self.job.stop)
        tokens = len(new) if cut is None else cut + 1
        if reason is None and cut is not None:
            reason = "stop"
        if reason is None and len(new) >= self.job.max_tokens:
            reason = "length"
        if reason is None:
            self._send(_settled(text, self.job.stop))
            return False
        self._finish(text, reason, tokens)
        return True

    def close(self) -> None:
        """Finish a row decoding ended without a verdict from :meth:`watch` (length)."""
        if not self.done:
            self._finish(self.sent, "length", self.job.max_tokens)

    def _send(self, text: str) -> None:
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.job.sink(Delta(self.index, text[len(self.sent) :]))
            self.sent = text

    def _finish(self, text: str, reason: str, tokens: int) -> None:
        self._send(text)
        self.done = True
        self.job.sink(Finish(self.index, reason, tokens))


def _stop_string(text: str, stop: list[str]) -> tuple[str | None, str]:
    """("stop", text before the earliest stop string) when one occurs, else (None, text)."""
    hits = [pos for pos in (text.find(s) for s in stop) if pos >= 0]
    return ("stop", text[: min(hits)]) if hits else (None, text)


def _settled(text: str, stop: list[str]) -> str:
    """The part of ``text`` that can be sent: no trailing partial character, nor a tail that
    may still grow into a stop string."""
    text = text.rstrip("\ufffd")
    hold = 0
    for s in stop:
        hold = max(hold, *(k for k in range(1, len(s)) if text.endswith(s[:k])), 0)
    return text[: len(text) - hold]
