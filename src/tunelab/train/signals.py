"""SIGINT/SIGTERM: finish the current step, save a checkpoint, exit cleanly."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class StopRequest:
    """Set by the first SIGINT/SIGTERM; a second SIGINT aborts at once."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __bool__(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch SIGINT and SIGTERM while the block runs; restore the old handlers after."""
    request = StopRequest()
    names = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, request._handle) for s in names}
    try:
        yield request
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
