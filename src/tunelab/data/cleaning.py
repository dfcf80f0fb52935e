"""Cleaning steps, each switchable in ``data.clean`` and counted with one example per step."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunelab.config import CleanConfig
from tunelab.data.formats import content_key, is_empty, map_strings, plain_text
from tunelab.data.loading import Row
from tunelab.errors import TunelabError

NUM_PERM = 128
SHINGLE_WORDS = 5

TokenCounter = Callable[[list[dict[str, Any]]], list[int]]


@dataclass
class StepLog:
    """How many rows a step removed, and the first of them."""

    removed: int = 0
    example: dict[str, Any] | None = None

    def add(self, row: Row, reason: str | None = None) -> None:
        self.removed += 1
        if self.example is None:
            self.example = {"where": row.where, "row": row.data}
            if reason:
                self.example["reason"] = reason


@dataclass
class CleanLog:
    """Counts of every cleaning step over all sources (train and given split files)."""

    normalized: int = 0
    steps: dict[str, StepLog] = field(default_factory=dict)

    def step(self, name: str) -> StepLog:
        return self.steps.setdefault(name, StepLog())

    def as_dict(self) -> dict[str, Any]:
        removed = {name: vars(log) for name, log in self.steps.items()}
        return {"normalized_rows": self.normalized, "removed": removed}


def normalize_text(text: str) -> str:
    """Unicode NFKC normalisation and whitespace trimming."""
    return unicodedata.normalize("NFKC", text).strip()


def shingles(text: str) -> set[bytes]:
    """Lower-cased word 5-gram shingles (the whole text when it has fewer words)."""
    words = text.lower().split()
    if len(words) <= SHINGLE_WORDS:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i : i + SHINGLE_WORDS]).encode() for i in range(len(words) - 4)}


def near_duplicate_flags(texts: list[str], threshold: float) -> list[bool]:
    """True for each text whose estimated Jaccard similarity to an earlier kept one >= threshold."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    minhashes = MinHash.bulk([list(shingles(text)) for text in texts], num_perm=NUM_PERM, seed=1)
    flags = []
    for index, minhash in enumerate(minhashes):
        duplicate = bool(lsh.query(minhash))
        if not duplicate:
            lsh.insert(str(index), minhash)
        flags.append(duplicate)
    return flags


class Cleaner:
    """Applies the configured steps to the rows of one source, logging into a shared CleanLog."""

    def __init__(self, cfg: CleanConfig, count_tokens: TokenCounter, log: CleanLog) -> None:
        self.cfg = cfg
        self.count_tokens = count_tokens
        self.log = log

    def run(self, rows: list[Row], invalid: list[tuple[Row, str]], source: str) -> list[Row]:
        """Clean one source's rows; error when a step leaves nothing."""
        if not rows and not invalid:
            raise TunelabError(f"{source}: no rows to read")
        self._invalid(invalid, source, had=len(rows) + len(invalid), left=len(rows))
        if self.cfg.normalize:
            rows = self._normalize(rows)
        for name, flags in self._filters():
            before = len(rows)
            rows = self._drop(rows, flags(rows), name)
            if before and not rows:
                raise TunelabError(
                    f"{source}: no rows left after cleaning; step {name!r} removed all "
                    f"{before} remaining rows (see data.clean)"
                )
        return rows

    def _invalid(self, invalid: list[tuple[Row, str]], source: str, had: int, left: int) -> None:
        if invalid and not self.cfg.drop_invalid:
            row, reason = invalid[0]
            raise TunelabError(
                f"{row.where}: invalid row ({reason}); fix it or set data.clean.drop_invalid: true"
            )
        step = self.log.step("invalid")
        for row, reason in invalid:
            step.add(row, reason)
        if had and not left:
            raise TunelabError(
                f"{source}: no rows left after cleaning; step 'invalid' removed all {had} rows "
                f"(first: {invalid[0][0].where}: {invalid[0][1]})"
            )

    def _normalize(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            data = map_strings(row.data, normalize_text)
            self.log.normalized += data != row.data
            out.append(Row(row.where, data))
        return out

    def _filters(self) -> list[tuple[str, Callable[[list[Row]], list[bool]]]]:
        """(step name, rows -> drop flags) for every enabled filter, in order."""
        cfg = self.cfg
        steps: list[tuple[str, Callable[[list[Row]], list[bool]]]] = []
        if cfg.drop_invalid:
            steps.append(("empty", lambda rows: [is_empty(r.data) for r in rows]))
        if cfg.keep_labels:
            keep = set(cfg.keep_labels)
            steps.append(("keep_labels", lambda rows: [r.data["label"] not in keep for r in rows]))
        if cfg.drop_labels:
            drop = set(cfg.drop_labels)
            steps.append(("drop_labels", lambda rows: [r.data["label"] in drop for r in rows]))
        steps += self._length_filters()
        if cfg.dedup:
            steps.append(("duplicates", exact_duplicate_flags))
        if cfg.near_dedup:
            steps.append(("near_duplicates", self._near_duplicates))
        return steps

    def _length_filters(self) -> list[tuple[str, Callable[[list[Row]], list[bool]]]]:
        cfg = self.cfg
        steps = []
        for name, limit, measure, too_short in (
            ("min_chars", cfg.min_chars, self._chars, True),
            ("max_chars", cfg.max_chars, self._chars, False),
            ("min_tokens", cfg.min_tokens, self._tokens, True),
            ("max_tokens", cfg.max_tokens, self._tokens, False),
        ):
            if limit is not None:
                steps.append((name, length_flags(measure, limit, too_short)))
        return steps

    def _chars(self, rows: list[Row]) -> list[int]:
        return [len(plain_text(r.data)) for r in rows]

    def _tokens(self, rows: list[Row]) -> list[int]:
        return self.count_tokens([r.data for r in rows])

    def _near_duplicates(self, rows: list[Row]) -> list[bool]:
        texts = [plain_text(r.data) for r in rows]
        return near_duplicate_flags(texts, self.cfg.near_dedup_threshold)

    def _drop(self, rows: list[Row], flags: list[bool], name: str) -> list[Row]:
        self.log.step(name)  # listed in the report even when it removes nothing
        kept = []
        for row, drop in zip(rows, flags, strict=True):
            if drop:
                self.log.step(name).add(row)
            else:
                kept.append(row)
        return kept


def length_flags(
    measure: Callable[[list[Row]], list[int]], limit: int, too_short: bool
) -> Callable[[list[Row]], list[bool]]:
    """Flags rows whose measured length is below (``too_short``) or above ``limit``."""

    def flags(rows: list[Row]) -> list[bool]:
        return [(n < limit) if too_short else (n > limit) for n in measure(rows)]

    return flags


def exact_duplicate_flags(rows: list[Row]) -> list[bool]:
    """True for every row whose content already appeared earlier."""
    seen: set[str] = set()
    flags = []
    for row in rows:
        key = content_key(row.data)
        flags.append(key in seen)
        seen.add(key)
    return flags
