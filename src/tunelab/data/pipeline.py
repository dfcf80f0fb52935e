"""prepare_data: load -> clean -> subsample -> split -> tokenise, cached on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.config import DataConfig, RunConfig
from tunelab.data.cache import cache_dir, cache_key, load_entry, save_entry
from tunelab.data.cleaning import Cleaner, CleanLog
from tunelab.data.formats import check_columns, to_examples
from tunelab.data.loading import Row, load_files, resolve_files
from tunelab.data.splitting import (
    SPLITS,
    drop_cross_split_duplicates,
    label_names_of,
    label_warnings,
    split_rows,
    subsample,
)
from tunelab.data.stats import label_counts, length_histograms, length_stats, unknown_warnings
from tunelab.data.tokenization import (
    Encoder,
    add_prompt_reference,
    unknown_rate,
    unknown_token_id,
)
from tunelab.errors import TunelabError
from tunelab.io import atomic_write_json
from tunelab.modalities.registry import modality_for
from tunelab.status import status


@dataclass
class PreparedData:
    """Tokenised splits, the canonical examples aligned with them, label names and report."""

    splits: dict[str, Any]
    examples: dict[str, list[dict[str, Any]]]
    label_names: list[str] | None
    report: dict[str, Any]
    from_cache: bool = False
    cache_path: Path | None = None


def prepare_data(cfg: RunConfig, tokenizer: Any = None) -> PreparedData:
    """Prepare the run's data (or load it from the cache) and write ``data_report.json``."""
    from datasets import disable_progress_bars

    disable_progress_bars()
    sources = source_files(cfg.data)
    if tokenizer is None:
        from tunelab.models import load_processor

        tokenizer = load_processor(cfg.model, cfg.data.format, cfg.data)
    path = cache_dir(cfg) / cache_key(cfg, sources, tokenizer)
    entry = load_entry(path)
    if entry is None:
        prepared = build(cfg.data, tokenizer, sources)
        meta = {
            "examples": prepared.examples,
            "label_names": prepared.label_names,
            "report": prepared.report,
        }
        save_entry(path, meta, prepared.splits)
    else:
        meta, splits = entry
        prepared = PreparedData(
            splits, meta["examples"], meta["label_names"], meta["report"], from_cache=True
        )
    prepared.cache_path = path
    report_path = cfg.run_dir / "data_report.json"
    prepared.report = {**prepared.report, "from_cache": prepared.from_cache}
    prepared.report["cache_path"] = str(path)
    prepared.report["report_path"] = str(report_path)
    atomic_write_json(report_path, prepared.report)
    return prepared


def source_files(cfg: DataConfig) -> dict[str, list[Path]]:
    """The files of every source: train (``data.path``) and the given split files."""
    sources = {"train": resolve_files(cfg.path)}
    for name, spec in (("validation", cfg.validation_path), ("test", cfg.test_path)):
        if spec:
            sources[name] = resolve_files(spec)
    return sources


def load_source(cfg: DataConfig, paths: list[Path], cleaner: Cleaner, log: CleanLog) -> list[Row]:
    """Load, convert and clean the rows of one source."""
    folder_keys = (cfg.columns.text, cfg.columns.label or "label")
    loaded = load_files(paths, cfg.file_type, cfg.on_bad_rows, folder_keys, cfg.encoding)
    for bad in loaded.bad_rows:
        log.step("malformed").add(Row(bad["where"], {"line": bad["line"]}), bad["error"])
    check_columns(loaded, cfg.format, cfg.columns)
    examples, invalid = to_examples(loaded.rows, cfg.format, cfg.columns)
    return cleaner.run(examples, invalid, source=", ".join(str(p) for p in paths))


def build(cfg: DataConfig, tokenizer: Any, sources: dict[str, list[Path]]) -> PreparedData:
    """Run the whole pipeline on the source files (a non-text format: its modality's)."""
    modality = modality_for(cfg.format)
    if modality is not None:
        from tunelab.data.modal_pipeline import build_modal

        return PreparedData(*build_modal(cfg, modality, tokenizer, sources))
    encoder = Encoder(tokenizer, cfg)
    log = CleanLog()
    cleaner = Cleaner(cfg.clean, encoder.token_lengths, log)
    given = {name: load_source(cfg, paths, cleaner, log) for name, paths in sources.items()}
    rows = subsample(given.pop("train"), cfg.max_samples, cfg.split.seed)
    classification = cfg.format == "classification"
    labels = [row.data["label"] for row in rows] if classification else None
    rows_by_split = {**split_rows(rows, cfg.split, set(given), labels), **given}
    rows_by_split = drop_cross_split_duplicates(rows_by_split, log)
    label_names = label_names_of(rows_by_split) if classification else None
    prepared = PreparedData({}, {}, label_names, {})
    lengths, truncated, dropped, unknown = {}, {}, {}, {}
    counts = [f"{name} {len(rows_by_split[name])}" for name in SPLITS if rows_by_split[name]]
    total = sum(len(rows_by_split[name]) for name in SPLITS)
    status(f"tokenising {total} rows ({', '.join(counts)})")
    for name in SPLITS:
        if not rows_by_split[name]:
            continue
        examples = [row.data for row in rows_by_split[name]]
        encoded = encoder.encode(examples, label_names)
        examples = drop_no_loss(rows_by_split[name], encoded.no_loss, log, name)
        if encoder.renderer is not None:
            examples = [add_prompt_reference(ex, encoder.renderer) for ex in examples]
        prepared.splits[name] = dataset_from(encoded.columns)
        prepared.examples[name] = examples
        lengths[name], truncated[name] = encoded.lengths, encoded.truncated
        dropped[name] = len(encoded.no_loss)
        unknown[name] = unknown_rate(encoded.columns["input_ids"], tokenizer)
    unk_token = tokenizer.unk_token if unknown_token_id(tokenizer) is not None else None
    prepared.report = build_report(cfg, prepared, log, lengths, truncated)
    prepared.report["no_loss_dropped"] = dropped  # of the truncated rows, per split
    prepared.report.update(unk_token=unk_token, unk_rate=unknown)
    prepared.report["warnings"] = report_warnings(prepared.report)
    return prepared


def drop_no_loss(
    rows: list[Row], no_loss: list[int], log: CleanLog, split: str
) -> list[dict[str, Any]]:
    """The split's examples without the rows truncation left with no response token."""
    dropped = set(no_loss)
    for index in no_loss:
        log.step("no_loss_after_truncation").add(rows[index])
    if len(dropped) == len(rows):
        raise TunelabError(
            f"{split}: no rows left; step 'no_loss_after_truncation' removed all {len(rows)} "
            "rows (every response was cut off; raise data.max_length or truncate on the left)"
        )
    return [row.data for i, row in enumerate(rows) if i not in dropped]


def dataset_from(columns: dict[str, list[Any]]) -> Any:
    """A ``datasets.Dataset`` of the tokenised columns."""
    from datasets import Dataset

    return Dataset.from_dict(columns)


def build_report(
    cfg: DataConfig,
    prepared: PreparedData,
    log: CleanLog,
    lengths: dict[str, list[int]],
    truncated: dict[str, int],
) -> dict[str, Any]:
    """The JSON-able data report."""
    report: dict[str, Any] = {
        "format": cfg.format,
        "max_length": cfg.max_length,
        "rows": {name: len(ex) for name, ex in prepared.examples.items()},
        "token_lengths": {name: length_stats(values) for name, values in lengths.items()},
        "token_length_histogram": length_histograms(lengths, cfg.max_length),
        "truncated": truncated,
        "cleaning": log.as_dict(),
    }
    if prepared.label_names is not None:
        report["label_names"] = prepared.label_names
        report["labels"] = {name: label_counts(ex) for name, ex in prepared.examples.items()}
    return report


def report_warnings(report: dict[str, Any]) -> list[str]:
    """The report's warnings: unknown tokens above the threshold, single-row or missing labels."""
    warnings = unknown_warnings(report)
    if "label_names" in report:
        warnings += label_warnings(report["labels"], report["label_names"])
    return warnings
