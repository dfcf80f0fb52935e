"""``partition.kind: column``: one value of a data column per client (e.g. a source or a
hospital id). The raw rows of ``data.path`` are grouped by the column's value, values in
sorted order, client ``i`` taking the ``i``-th; each client writes its group to a JSONL file
in its own workspace and prepares that as its data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.config import RunConfig
from tunelab.data.loading import load_files, resolve_files
from tunelab.errors import TunelabError
from tunelab.io import atomic_write_text


def column_groups(cfg: RunConfig) -> list[list[dict[str, Any]]]:
    """The raw rows of each client, by the sorted values of ``partition.column``."""
    data, fed = cfg.data, cfg.federated
    column = fed.partition.column
    keys = (data.columns.text, data.columns.label or "label")
    loaded = load_files(
        resolve_files(data.path), data.file_type, data.on_bad_rows, keys, data.encoding
    )
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in loaded.rows:
        if column not in row.data:
            raise TunelabError(
                f"federated.partition.column {column!r} is not a column of {row.where} "
                f"(columns: {', '.join(sorted(row.data))}); name one of them"
            )
        groups.setdefault(str(row.data[column]), []).append(row.data)
    if len(groups) != fed.clients:
        shown = ", ".join(sorted(groups)[:6]) + (" ..." if len(groups) > 6 else "")
        raise TunelabError(
            f"federated.partition.column {column!r} has {len(groups)} values ({shown}) but "
            f"federated.clients is {fed.clients}; set clients to the number of values"
        )
    return [groups[value] for value in sorted(groups)]


def write_client_file(cfg: RunConfig, partition: int, folder: Path) -> Path:
    """Write client ``partition``'s rows to ``folder/rows.jsonl`` and return the path."""
    rows = column_groups(cfg)[partition]
    path = folder / "rows.jsonl"
    atomic_write_text(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))
    return path
