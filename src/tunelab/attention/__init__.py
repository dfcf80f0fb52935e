"""Attention-weight visualisation: maps read from the real model (eager attention), rollout
across layers, fine-tuned beside base, written as a self-contained HTML page.

The entry points load on first use (they import torch).
"""

from __future__ import annotations

from tunelab.lazy_exports import lazy_getattr

_EXPORTS = {
    "AttentionResult": "tunelab.attention.api",
    "attention": "tunelab.attention.api",
    "read_attention_maps": "tunelab.attention.api",
    "write_attention_page": "tunelab.attention.api",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
