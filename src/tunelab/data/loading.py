"""Read the user's data files into raw rows: JSONL, JSON, CSV, TSV, Parquet, label folders."""

from __future__ import annotations

import codecs
import csv
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError, first_line
from tunelab.paths import resolve_path

EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}


@dataclass
class Row:
    """One raw or canonical row and where it came from (``file:line``) for error messages."""

    where: str
    data: dict[str, Any]


@dataclass
class Loaded:
    """The rows read from one or more files, plus malformed rows that were skipped."""

    rows: list[Row] = field(default_factory=list)
    columns: dict[str, list[str]] = field(default_factory=dict)
    bad_rows: list[dict[str, str]] = field(default_factory=list)


def resolve_files(spec: str | list[str]) -> list[Path]:
    """Resolve ``data.path`` (a file, a list of files, or a folder); error on a missing one."""
    paths = []
    for item in [spec] if isinstance(spec, str) else spec:
        path = resolve_path(item)
        if not path.exists():
            raise TunelabError(f"data file not found: {item}")
        paths.append(path)
    return paths


def detect_type(path: Path, file_type: str) -> str:
    """The file type: ``file_type`` unless it is auto, else from the extension (folder for dirs)."""
    if file_type != "auto":
        return file_type
    if path.is_dir():
        return "folder"
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise TunelabError(
            f"{path}: unknown file type {path.suffix!r}; set data.file_type "
            f"(one of {', '.join(sorted(set(EXTENSIONS.values())))}, folder)"
        )
    return kind


def load_files(
    paths: list[Path],
    file_type: str,
    on_bad_rows: str,
    folder_keys: tuple[str, str],
    encoding: str = "utf-8",
) -> Loaded:
    """Read every file in ``paths`` (text in ``encoding``) and concatenate their rows.

    ``folder_keys`` names the (text, label) columns that label-folder rows are given.
    """
    check_encoding(encoding)
    loaded = Loaded()
    for path in paths:
        kind = detect_type(path, file_type)
        if kind == "jsonl":
            rows = read_jsonl(path, on_bad_rows, loaded.bad_rows, encoding)
        elif kind == "folder":
            rows = read_label_folder(path, *folder_keys, encoding=encoding)
        else:
            rows = read_with_datasets(path, kind, encoding)
        loaded.columns[str(path)] = column_names(rows)
        loaded.rows.extend(rows)
    return loaded


def check_encoding(encoding: str) -> str:
    """The codec name to read with (``utf-8-sig`` for UTF-8, so a byte-order mark is skipped)."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise TunelabError(
            f"data.encoding {encoding!r}: unknown encoding; use e.g. utf-8, latin-1 or cp1252"
        ) from None
    return "utf-8-sig" if name == "utf-8" else encoding


def column_names(rows: list[Row]) -> list[str]:
    """The union of the rows' keys, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row.data))
    return list(seen)


def read_jsonl(
    path: Path, on_bad_rows: str, bad_rows: list[dict[str, str]], encoding: str = "utf-8"
) -> list[Row]:
    """Parse a JSONL file line by line; a malformed line errors (or is skipped and recorded).

    Bytes not valid in ``encoding`` become U+FFFD, as in the label-folder reader."""
    rows = []
    with path.open(encoding=check_encoding(encoding), errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                value = json.loads(line)
                if not isinstance(value, dict):
                    raise ValueError(f"expected a JSON object, got {type(value).__name__}")
            except ValueError as exc:
                problem = f"malformed JSON line ({first_line(exc)})"
                if on_bad_rows == "error":
                    raise TunelabError(
                        f"{where}: {problem}; fix it or set data.on_bad_rows: skip"
                    ) from None
                bad_rows.append({"where": where, "error": problem, "line": line.strip()[:200]})
                continue
            rows.append(Row(where, value))
    return rows


def read_with_datasets(path: Path, kind: str, encoding: str = "utf-8") -> list[Row]:
    """Read a JSON array, CSV, TSV or Parquet file through ``datasets`` (no HF cache left behind)."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="tunelab-load-") as tmp:
        options: dict[str, Any] = {"cache_dir": tmp, "keep_in_memory": True}
        text = {"encoding": check_encoding(encoding)}
        try:
            if kind == "parquet":
                ds = Dataset.from_parquet(str(path), **options)
            elif kind == "json":
                ds = Dataset.from_json(str(path), **options, **text)
            else:
                sep = "\t" if kind == "tsv" else ","
                ds = Dataset.from_csv(str(path), sep=sep, **options, **text)
        except Exception as exc:
            hint = (
                f"; it was read as {encoding} (data.encoding): set data.encoding to the "
                "file's encoding (e.g. latin-1, cp1252)"
            )
            hint = hint if isinstance(innermost(exc), UnicodeError) else ""
            raise TunelabError(
                f"{path}: cannot be read as {kind} ({root_cause(exc)}){hint}"
            ) from None
        records = ds.to_list()
    offset = 2 if kind in ("csv", "tsv") else 1  # CSV: line 1 is the header
    label = "line" if kind in ("csv", "tsv") else "row"
    return [Row(f"{path}:{label} {i + offset}", rec) for i, rec in enumerate(records)]


def innermost(exc: BaseException) -> BaseException:
    """The innermost exception in ``exc``'s chain (datasets wraps errors)."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return exc


def root_cause(exc: BaseException) -> str:
    """The first line of the innermost exception in ``exc``'s chain (datasets wraps errors)."""
    return first_line(innermost(exc))


def read_label_folder(
    path: Path, text_key: str, label_key: str, encoding: str = "utf-8"
) -> list[Row]:
    """One sub-folder per label (sorted), each ``.txt`` file (in ``encoding``) one example."""
    labels = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not labels:
        raise TunelabError(f"{path}: folder has no label sub-folders (expected <label>/*.txt)")
    rows = []
    for label_dir in labels:
        for file in sorted(label_dir.glob("*.txt")):
            text = file.read_bytes().decode(check_encoding(encoding), errors="replace")
            rows.append(Row(str(file), {text_key: text, label_key: label_dir.name}))
    return rows


def peek_columns(path: Path, kind: str, folder_keys: tuple[str, str], limit: int) -> list[str]:
    """The column names of the first ``limit`` rows of one file (a CSV/TSV header, a Parquet
    schema), without reading the rest; malformed JSONL lines are left to the full load."""
    if kind == "folder":
        return list(folder_keys)
    if kind == "jsonl":
        rows = []
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if len(rows) >= limit:
                    break
                try:
                    value = json.loads(line)
                except ValueError:  # blank or malformed: the full load reports it
                    continue
                if isinstance(value, dict):
                    rows.append(Row("", value))
        return column_names(rows)
    if kind in ("csv", "tsv"):
        with path.open(encoding="utf-8", errors="replace", newline="") as fh:
            return next(csv.reader(fh, delimiter="\t" if kind == "tsv" else ","), [])
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several error types for unreadable files
            raise TunelabError(f"{path}: cannot be read as parquet ({root_cause(exc)})") from None
    return column_names(read_with_datasets(path, kind)[:limit])
