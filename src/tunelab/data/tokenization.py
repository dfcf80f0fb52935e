"""Tokenise canonical examples into model inputs with loss labels and truncation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.config import DataConfig
from tunelab.data.formats import CONVERSATION_FORMATS
from tunelab.data.templates import ChatRenderer, last_assistant
from tunelab.errors import TunelabError

IGNORE = -100


@dataclass
class Encoded:
    """One split, tokenised: feature columns, token lengths before truncation, dropped rows."""

    columns: dict[str, list[Any]] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)
    truncated: int = 0
    no_loss: list[int] = field(default_factory=list)


class Encoder:
    """Tokenises the examples of one data format the way the config asks."""

    def __init__(self, tokenizer: Any, cfg: DataConfig) -> None:
        self.tok = tokenizer
        self.cfg = cfg
        self.renderer = (
            ChatRenderer(tokenizer, cfg.template) if cfg.format in CONVERSATION_FORMATS else None
        )
        if self.renderer and not tokenizer.is_fast:
            raise TunelabError("response masks need a fast tokenizer (with offset mapping)")

    def token_lengths(self, examples: list[dict[str, Any]]) -> list[int]:
        """Tokens per example before truncation (special tokens and template included)."""
        if self.cfg.format == "classification":
            return [len(ids) for ids in self._classify_call(examples, truncate=False)["input_ids"]]
        return [len(self._lm_features(ex)["input_ids"]) for ex in examples]

    def encode(self, examples: list[dict[str, Any]], label_names: list[str] | None) -> Encoded:
        """Tokenise a split; causal-LM rows left without any loss token are listed in no_loss."""
        if self.cfg.format == "classification":
            return self._encode_classification(examples, label_names or [])
        out = Encoded(columns={"input_ids": [], "attention_mask": [], "labels": []})
        for index, example in enumerate(examples):
            features = self._lm_features(example)
            length = len(features["input_ids"])
            if length > self.cfg.max_length:
                features = {k: self._cut(v) for k, v in features.items()}
                out.truncated += 1
            if all(label == IGNORE for label in features["labels"]):
                out.no_loss.append(index)
                continue
            out.lengths.append(length)
            for key, values in features.items():
                out.columns[key].append(values)
        return out

    def _cut(self, values: list[int]) -> list[int]:
        keep = self.cfg.max_length
        return values[:keep] if self.cfg.truncation_side == "right" else values[-keep:]

    def _encode_classification(
        self, examples: list[dict[str, Any]], label_names: list[str]
    ) -> Encoded:
        lengths = self.token_lengths(examples)
        columns = dict(self._classify_call(examples, truncate=True))
        columns["labels"] = [label_names.index(ex["label"]) for ex in examples]
        truncated = sum(length > self.cfg.max_length for length in lengths)
        return Encoded(columns=columns, lengths=lengths, truncated=truncated)

    def _classify_call(self, examples: list[dict[str, Any]], truncate: bool) -> dict[str, Any]:
        texts = [ex["text"] for ex in examples]
        pairs = [ex["text_pair"] for ex in examples] if self.cfg.columns.text_pair else None
        options = {"truncation": True, "max_length": self.cfg.max_length} if truncate else {}
        side, self.tok.truncation_side = self.tok.truncation_side, self.cfg.truncation_side
        try:
            return self.tok(texts, pairs, **options).data
        finally:
            self.tok.truncation_side = side

    def _lm_features(self, example: dict[str, Any]) -> dict[str, list[int]]:
        if self.renderer is None:
            return self._text_features(example["text"])
        text, spans = self.renderer.render_with_spans(example["messages"])
        enc = self.tok(
            text,
            add_special_tokens=self.renderer.add_special_tokens,
            return_offsets_mapping=True,
        )
        ids = enc["input_ids"]
        in_response = [any(s <= start < e for s, e in spans) for start, _ in enc["offset_mapping"]]
        if self.cfg.loss_on == "all":
            labels = list(ids)
        else:
            labels = [i if keep else IGNORE for i, keep in zip(ids, in_response, strict=True)]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}

    def _text_features(self, text: str) -> dict[str, list[int]]:
        ids = self.tok(text)["input_ids"]
        eos = self.tok.eos_token_id
        if eos is not None and (not ids or ids[-1] != eos):
            ids = [*ids, eos]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)}


def add_prompt_reference(example: dict[str, Any], renderer: ChatRenderer) -> dict[str, Any]:
    """Add ``prompt`` (rendered up to the last generation prompt) and ``reference``."""
    messages = example["messages"]
    reference = messages[last_assistant(messages)]["content"]
    return {**example, "prompt": renderer.prompt(messages), "reference": reference}


def unknown_token_id(tokenizer: Any) -> int | None:
    """The id of the tokenizer's unknown token; None when it has none that input can map to.

    Byte-level tokenizers (GPT-2) name their end-of-text token as ``unk_token`` but never
    emit it for text they cannot read, so an unk id shared with BOS/EOS does not count.
    """
    unk = tokenizer.unk_token_id
    if unk is None or unk in {tokenizer.bos_token_id, tokenizer.eos_token_id}:
        return None
    return unk


def unknown_rate(input_ids: list[list[int]], tokenizer: Any) -> float:
    """Share of the non-special tokens in ``input_ids`` that are the unknown token."""
    unk = unknown_token_id(tokenizer)
    if unk is None:
        return 0.0
    special = set(tokenizer.all_special_ids) - {unk}
    total = unknown = 0
    for ids in input_ids:
        for token in ids:
            if token not in special:
                total += 1
                unknown += token == unk
    return round(unknown / total, 4) if total else 0.0
