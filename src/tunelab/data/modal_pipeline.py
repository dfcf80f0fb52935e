"""prepare_data for a non-text format: rows -> its modality's examples -> split -> encode.

The same load, subsample, split and report as text (``tunelab.data.pipeline``); what differs
comes from the modality (``tunelab.modalities.base``): its columns, label folders of media
files, a missing or unreadable file (an error naming the row, or skipped and counted as
``bad_files`` under ``data.on_bad_rows: skip``), duplicates by file content, and the encoded
columns (file references; media are decoded at collate time).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.config import DataConfig
from tunelab.data.cleaning import CleanLog
from tunelab.data.formats import InvalidRow, required_columns
from tunelab.data.loading import Row, detect_type, load_files
from tunelab.data.splitting import SPLITS, label_names_of, label_warnings, split_rows, subsample
from tunelab.data.stats import label_counts
from tunelab.errors import TunelabError
from tunelab.modalities.base import BadFile
from tunelab.status import status

if TYPE_CHECKING:
    from tunelab.modalities.base import Modality, Processor


def build_modal(
    cfg: DataConfig, modality: Modality, processor: Processor, sources: dict[str, list[Path]]
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], list[str] | None, dict[str, Any]]:
    """``(splits, examples, label_names, report)`` of a non-text format's source files."""
    from datasets import Dataset

    log = CleanLog()
    given = {name: load_source(cfg, modality, paths, log) for name, paths in sources.items()}
    rows = subsample(given.pop("train"), cfg.max_samples, cfg.split.seed)
    labelled = modality.task == "classification"
    labels = [row.data["label"] for row in rows] if labelled else None
    rows_by_split = {**split_rows(rows, cfg.split, set(given), labels), **given}
    rows_by_split = drop_duplicates(rows_by_split, modality, log, cfg.clean.dedup)
    label_names = label_names_of(rows_by_split) if labelled else None
    splits: dict[str, Any] = {}
    examples_by_split: dict[str, list[dict[str, Any]]] = {}
    status(f"encoding {sum(len(r) for r in rows_by_split.values())} {cfg.format} rows")
    for name in SPLITS:
        if rows_by_split.get(name):
            examples = [row.data for row in rows_by_split[name]]
            columns = modality.encode(examples, processor, label_names, cfg)
            splits[name] = Dataset.from_dict(columns)
            examples_by_split[name] = [jsonable(ex) for ex in examples]
    report: dict[str, Any] = {
        "format": cfg.format,
        "rows": {name: len(ex) for name, ex in examples_by_split.items()},
        "token_lengths": {},
        "truncated": {},
        "cleaning": log.as_dict(),
    }
    if label_names is not None:
        report["label_names"] = label_names
        report["labels"] = {name: label_counts(ex) for name, ex in examples_by_split.items()}
    report["warnings"] = label_warnings(report["labels"], label_names) if label_names else []
    return splits, examples_by_split, label_names, report


def jsonable(example: dict[str, Any]) -> dict[str, Any]:
    """The example for the report, cache and predictions: media bytes become a short tag
    (the encoded columns keep the bytes)."""
    return {
        key: f"<{len(value)} bytes, sha256 {hashlib.sha256(value).hexdigest()[:12]}>"
        if isinstance(value, bytes)
        else value
        for key, value in example.items()
    }


def load_source(cfg: DataConfig, modality: Modality, paths: list[Path], log: CleanLog) -> list[Row]:
    """The examples of one source (files or label folders), cleaned; the log counts drops."""
    examples: list[Row] = []
    source = ", ".join(str(p) for p in paths)
    for path in paths:
        for where, data, base in raw_rows(cfg, modality, path, log):
            try:
                examples.append(Row(where, modality.to_example(data, cfg.columns, base)))
            except BadFile as exc:
                if cfg.on_bad_rows == "error":
                    raise TunelabError(
                        f"{where}: {exc}; fix it or set data.on_bad_rows: skip"
                    ) from None
                log.step("bad_files").add(Row(where, data), str(exc))
            except InvalidRow as exc:
                if not cfg.clean.drop_invalid:
                    raise TunelabError(
                        f"{where}: invalid row ({exc}); fix it or set data.clean.drop_invalid: true"
                    ) from None
                log.step("invalid").add(Row(where, data), str(exc))
    examples = drop_labels(examples, cfg, log)
    if not examples:
        raise TunelabError(f"{source}: no usable rows (see the data report's cleaning counts)")
    return examples


def raw_rows(
    cfg: DataConfig, modality: Modality, path: Path, log: CleanLog
) -> list[tuple[str, dict[str, Any], Path]]:
    """(where, raw row, folder its relative paths start from) of one file or label folder."""
    if detect_type(path, cfg.file_type) == "folder":
        return [(where, row, path) for where, row in modality.folder_rows(path, cfg.columns)]
    keys = (cfg.columns.text, cfg.columns.label or "label")
    loaded = load_files([path], cfg.file_type, cfg.on_bad_rows, keys, cfg.encoding)
    for bad in loaded.bad_rows:
        log.step("malformed").add(Row(bad["where"], {"line": bad["line"]}), bad["error"])
    names = loaded.columns.get(str(path)) or []
    for key, name in required_columns(cfg.format, cfg.columns).items():
        if names and name not in names:
            raise TunelabError(
                f"{path}: column {name!r} (data.columns.{key}) not found; "
                f"columns are: {', '.join(names)}"
            )
    return [(row.where, row.data, path.parent) for row in loaded.rows]


def drop_labels(rows: list[Row], cfg: DataConfig, log: CleanLog) -> list[Row]:
    """``data.clean.keep_labels`` / ``drop_labels``."""
    keep, drop = cfg.clean.keep_labels, cfg.clean.drop_labels
    if not keep and not drop:
        return rows
    name = "keep_labels" if keep else "drop_labels"
    kept = []
    for row in rows:
        if (keep and row.data["label"] not in keep) or (drop and row.data["label"] in drop):
            log.step(name).add(row)
        else:
            kept.append(row)
    return kept


def drop_duplicates(
    splits: dict[str, list[Row]], modality: Modality, log: CleanLog, within: bool
) -> dict[str, list[Row]]:
    """Drop rows whose media repeat an earlier split's (and, with ``within``, its own)."""
    seen: set[str] = set()
    out: dict[str, list[Row]] = {}
    for name in SPLITS:
        kept, here = [], set()
        for row in splits.get(name, []):
            key = modality.content_key(row.data)
            if key in seen:
                log.step("cross_split_duplicates").add(row)
            elif within and key in here:
                log.step("duplicates").add(row)
            else:
                kept.append(row)
                here.add(key)
        if splits.get(name) and not kept:
            raise TunelabError(f"{name}: no rows left after removing duplicate media")
        seen |= here
        out[name] = kept
    return out
