"""One-line notes before slow phases: loading a model, dequantising a GGUF file, tokenising.

They go to stderr, so that what a command writes to stdout stays its output, and only from
the main process of a multi-process launch (``RANK`` 0).
"""

from __future__ import annotations

import os
import sys


def status(text: str) -> None:
    """Say what tunelab is about to do (a whole line, flushed at once)."""
    if os.environ.get("RANK", "0") == "0":
        print(text, file=sys.stderr, flush=True)
