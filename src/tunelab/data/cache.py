"""On-disk cache of tokenised data, keyed by file contents, data config and tokenizer.

Layout of one entry: ``<key>/meta.json`` (label names, report, canonical examples) and
``<key>/<split>/`` (``datasets`` ``save_to_disk``). Entries are written atomically; nothing
is pickled.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tunelab.config import RunConfig
from tunelab.io import atomic_dir
from tunelab.modalities.registry import modality_for
from tunelab.paths import cache_root, resolve_path

CACHE_VERSION = "3"  # 2: unk_rate, unk_token and warnings; 3: token_length_histogram


def cache_dir(cfg: RunConfig) -> Path:
    """``data.cache_dir``, else ``cache_root()/data``."""
    return resolve_path(cfg.data.cache_dir) if cfg.data.cache_dir else cache_root() / "data"


def hash_files(hasher: Any, paths: list[Path]) -> None:
    """Feed every file's bytes (every file under a folder, by relative path) to ``hasher``."""
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            hasher.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
            hasher.update(hashlib.sha256(file.read_bytes()).digest())


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what decides the token ids: vocabulary/model, special tokens, chat template."""
    if tokenizer.is_fast:
        state = json.loads(tokenizer.backend_tokenizer.to_str())
        for transient in ("truncation", "padding"):  # set per call, not part of the vocabulary
            state.pop(transient, None)
        body = json.dumps(state, sort_keys=True)
    else:
        body = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = {
        "class": type(tokenizer).__name__,
        "special": tokenizer.special_tokens_map,
        "chat_template": tokenizer.chat_template,
    }
    digest = hashlib.sha256(body.encode())
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def cache_key(cfg: RunConfig, sources: dict[str, list[Path]], tokenizer: Any) -> str:
    """The cache key of a prepare run."""
    hasher = hashlib.sha256(CACHE_VERSION.encode())
    data = cfg.data.model_dump(mode="json", exclude={"cache_dir"})
    hasher.update(json.dumps({"data": data, "task": cfg.task}, sort_keys=True).encode())
    for name in sorted(sources):
        hasher.update(name.encode())
        hash_files(hasher, sources[name])
    modality = modality_for(cfg.data.format)
    processor = modality.fingerprint(tokenizer) if modality else tokenizer_fingerprint(tokenizer)
    hasher.update(processor.encode())
    return hasher.hexdigest()[:32]


def load_entry(path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(meta, splits) of a cache entry, or None when there is none."""
    from datasets import load_from_disk

    meta_file = path / "meta.json"
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    splits = {name: load_from_disk(str(path / name)) for name in meta["split_names"]}
    return meta, splits


def save_entry(path: Path, meta: dict[str, Any], splits: dict[str, Any]) -> None:
    """Write a cache entry atomically."""
    with atomic_dir(path) as tmp:
        for name, dataset in splits.items():
            dataset.save_to_disk(str(tmp / name))
        body = {**meta, "split_names": list(splits)}
        (tmp / "meta.json").write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
