"""Attention rollout (Abnar & Zuidema, 2020): how much each token draws on each input token
through all layers, residual connections included."""

from __future__ import annotations

import numpy as np


def rollout(layers: np.ndarray) -> np.ndarray:
    """Rollout of ``layers`` (``[layers, heads, seq, seq]``, rows summing to 1) -> ``[seq, seq]``.

    Per layer: the mean over heads, plus the identity for the residual connection, rows
    renormalised; the layers' matrices are then multiplied from the first up
    (``R = A_L ... A_2 A_1``), so row ``i`` of the result is token ``i``'s share of each input
    token at the last layer.
    """
    if layers.ndim != 4 or layers.shape[-1] != layers.shape[-2]:
        raise ValueError(f"rollout needs [layers, heads, seq, seq] maps, got {layers.shape}")
    size = layers.shape[-1]
    result = np.eye(size)
    for layer in layers.astype(np.float64):
        mixed = layer.mean(axis=0) + np.eye(size)
        mixed /= mixed.sum(axis=-1, keepdims=True)
        result = mixed @ result
    return result
