"""Which train rows each client holds: ``iid`` or ``dirichlet`` by label (seeded).

The server and every simulated client compute the same partition from the same prepared
train split, so no row list travels. ``files`` partitions need none: each client prepares its
own file (``client.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tunelab.errors import TunelabError

DIRICHLET_TRIES = 100


def partition_rows(
    kind: str, clients: int, n_rows: int, labels: Sequence[int] | None, alpha: float, seed: int
) -> list[list[int]]:
    """Row indices of each client (sorted); every client gets at least one row."""
    if clients > n_rows:
        raise TunelabError(
            f"federated.clients is {clients} but the train split has only {n_rows} examples; "
            "use fewer clients or more data"
        )
    rng = np.random.default_rng(seed)
    if kind == "iid":
        order = rng.permutation(n_rows)
        return [sorted(part.tolist()) for part in np.array_split(order, clients)]
    if labels is None:
        raise TunelabError(
            "federated.partition.kind dirichlet needs labels (data.format classification); "
            "use kind: iid"
        )
    return dirichlet_rows(np.asarray(labels), clients, alpha, rng)


def dirichlet_rows(
    labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator
) -> list[list[int]]:
    """Each label's rows shared out in Dirichlet(alpha) proportions; redrawn while a client
    would be empty."""
    for _ in range(DIRICHLET_TRIES):
        parts: list[list[int]] = [[] for _ in range(clients)]
        for label in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
            for client, chunk in enumerate(np.split(rows, cuts)):
                parts[client].extend(chunk.tolist())
        if all(parts):
            return [sorted(part) for part in parts]
    raise TunelabError(
        f"federated.partition.alpha {alpha:g} leaves a client without data in "
        f"{DIRICHLET_TRIES} draws; raise alpha or use fewer clients"
    )


def label_counts(parts: list[list[int]], labels: Sequence[int] | None) -> list[dict[int, int]]:
    """Rows per label for each client (empty dicts without labels)."""
    if labels is None:
        return [{} for _ in parts]
    values = np.asarray(labels)
    return [
        {int(k): int(v) for k, v in zip(*np.unique(values[part], return_counts=True), strict=True)}
        for part in parts
    ]
