"""Turn raw rows into canonical examples, one shape per data format.

classification: ``{"text", "text_pair", "label"}``; instruction / chat / qa:
``{"messages", "context"}`` (``prompt`` and ``reference`` are added when rendering);
text: ``{"text"}``.
"""

from __future__ import annotations

import json
from typing import Any

from tunelab.config import ColumnsConfig
from tunelab.data.loading import Loaded, Row
from tunelab.errors import TunelabError
from tunelab.modalities.registry import modality_for

CONVERSATION_FORMATS = ("instruction", "chat", "qa")
ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
}


class InvalidRow(ValueError):
    """A row that cannot become an example (wrong type, missing value, no assistant turn)."""


def required_columns(fmt: str, columns: ColumnsConfig) -> dict[str, str]:
    """Config key -> column name of every column the format needs."""
    if (modality := modality_for(fmt)) is not None:
        return modality.required_columns(columns)
    keys = {
        "classification": ["text", "label", "text_pair"],
        "instruction": ["instruction", "output", "system"],
        "chat": ["messages"],
        "qa": ["question", "answer", "system"],
        "text": ["text"],
    }[fmt]
    return {key: getattr(columns, key) for key in keys if getattr(columns, key)}


def check_columns(loaded: Loaded, fmt: str, columns: ColumnsConfig) -> None:
    """Error naming the first missing column of any file and listing the columns it has."""
    for file, names in loaded.columns.items():
        if not names:
            continue
        for key, name in required_columns(fmt, columns).items():
            if name not in names:
                raise TunelabError(
                    f"{file}: column {name!r} (data.columns.{key}) not found; "
                    f"columns are: {', '.join(names)}"
                )


def as_text(value: Any) -> str:
    """A string field: None -> '' (an empty row), numbers -> their text, others are invalid."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return as_label(value)
    raise InvalidRow(f"expected text, got {type(value).__name__}")


def as_label(value: Any) -> str:
    """A label as a string (``1.0`` and ``1`` both become ``"1"``)."""
    if value is None or value == "":
        raise InvalidRow("label is missing")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float | bool):
        return str(value)
    raise InvalidRow(f"label must be a string or number, got {type(value).__name__}")


def convert_messages(value: Any) -> list[dict[str, str]]:
    """A list of role/content messages; sharegpt from/value (human/gpt/system) is converted."""
    if not isinstance(value, list) or not value:
        raise InvalidRow("messages must be a non-empty list")
    out = []
    for message in value:
        if not isinstance(message, dict):
            raise InvalidRow("each message must be an object")
        if "role" in message and "content" in message:
            role, content = message["role"], message["content"]
        elif "from" in message and "value" in message:
            role, content = message["from"], message["value"]
        else:
            raise InvalidRow("each message needs role/content (or sharegpt from/value)")
        if role not in ROLES:
            raise InvalidRow(f"unknown role {role!r} (allowed: {', '.join(ROLES)})")
        out.append({"role": ROLES[role], "content": as_text(content)})
    if not any(m["role"] == "assistant" for m in out):
        raise InvalidRow("the conversation has no assistant turn")
    return out


def _system(data: dict[str, Any], columns: ColumnsConfig) -> list[dict[str, str]]:
    system = as_text(data.get(columns.system)) if columns.system else ""
    return [{"role": "system", "content": system}] if system else []


def convert_row(data: dict[str, Any], fmt: str, columns: ColumnsConfig) -> dict[str, Any]:
    """The canonical example for one raw row; raises InvalidRow when it cannot be built."""
    if fmt == "classification":
        inputs = classification_inputs(data, columns)
        return {**inputs, "label": as_label(data.get(columns.label))}
    if fmt == "text":
        return {"text": as_text(data.get(columns.text))}
    if fmt == "chat":
        return {"messages": convert_messages(data.get(columns.messages)), "context": None}
    if fmt == "instruction":
        user = as_text(data.get(columns.instruction))
        extra = as_text(data.get(columns.input))
        user = f"{user}\n\n{extra}" if extra else user
        answer = as_text(data.get(columns.output))
        return {"messages": conversation(data, columns, user, answer), "context": None}
    context = as_text(data.get(columns.context)) or None
    question = as_text(data.get(columns.question))
    user = f"{context}\n\n{question}" if context else question
    answer = as_text(data.get(columns.answer))
    return {"messages": conversation(data, columns, user, answer), "context": context}


def classification_inputs(data: dict[str, Any], columns: ColumnsConfig) -> dict[str, Any]:
    """The ``text`` and ``text_pair`` of a classification row (its label is not read)."""
    pair = as_text(data.get(columns.text_pair)) if columns.text_pair else None
    return {"text": as_text(data.get(columns.text)), "text_pair": pair}


def conversation(
    data: dict[str, Any], columns: ColumnsConfig, user: str, answer: str
) -> list[dict[str, str]]:
    """[system] + user + assistant messages for instruction and qa rows."""
    return [
        *_system(data, columns),
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
    ]


def to_examples(
    rows: list[Row], fmt: str, columns: ColumnsConfig
) -> tuple[list[Row], list[tuple[Row, str]]]:
    """Convert rows; return the examples and the (row, reason) pairs that were invalid."""
    examples, invalid = [], []
    for row in rows:
        try:
            examples.append(Row(row.where, convert_row(row.data, fmt, columns)))
        except InvalidRow as exc:
            invalid.append((row, str(exc)))
    return examples, invalid


def map_strings(example: dict[str, Any], fn: Any) -> dict[str, Any]:
    """Apply ``fn`` to every string field of a canonical example (message contents included)."""
    out: dict[str, Any] = {}
    for key, value in example.items():
        if isinstance(value, str):
            out[key] = fn(value)
        elif key == "messages":
            out[key] = [{"role": m["role"], "content": fn(m["content"])} for m in value]
        else:
            out[key] = value
    return out


def is_empty(example: dict[str, Any]) -> bool:
    """True when the input text, or any message, is empty."""
    if "messages" in example:
        return any(not m["content"] for m in example["messages"])
    return not example["text"] or example.get("text_pair") == ""


def content_key(example: dict[str, Any]) -> str:
    """What makes two examples the same: the inputs (not the label) for classification."""
    if "messages" in example:
        return json.dumps(example["messages"], ensure_ascii=False, sort_keys=True)
    return json.dumps([example["text"], example.get("text_pair")], ensure_ascii=False)


def plain_text(example: dict[str, Any]) -> str:
    """All of an example's text, joined by newlines (for lengths and near-duplicate search)."""
    if "messages" in example:
        return "\n".join(m["content"] for m in example["messages"])
    return "\n".join(t for t in (example["text"], example.get("text_pair")) if t)
