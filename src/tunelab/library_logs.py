"""Library log lines that are noise to tunelab's users, dropped at the logger that emits them.

PEFT imports bitsandbytes whenever it is installed, QLoRA or not; on a CPU with AVX-512 BF16,
bitsandbytes then warns that the optional ``kernels`` package is missing. Its own slower path
works, and only 4-bit (QLoRA) layers use it. ``save_pretrained`` imports DeepSpeed whenever
it is installed, which says it found no GPU: the converters (:data:`SAVE_DROPPED`) only save
on the CPU. Every other line of those loggers still shows.
"""

from __future__ import annotations

import logging

# logger name -> the starts of the lines dropped from it
DROPPED = {
    "bitsandbytes.backends.cpu.ops": (
        "Failed to load CPU gemm_4bit_forward from kernels-community",
    ),
}


# dropped by ``python -m tunelab.convert``: it saves models on the CPU, on purpose
SAVE_DROPPED = {"DeepSpeed": ("Setting accelerator to CPU",)}


class _Drop(logging.Filter):
    """Drops records whose message starts with one of ``starts``."""

    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def drop_library_noise(dropped: dict[str, tuple[str, ...]] = DROPPED) -> None:
    """Install the filters (once) on the loggers of ``dropped``, before their libraries load:
    their ``getLogger`` returns these same loggers (filters survive their own setup)."""
    for name, starts in dropped.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) for f in logger.filters):
            logger.addFilter(_Drop(starts))
