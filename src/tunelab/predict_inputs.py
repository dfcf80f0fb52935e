"""``tunelab predict`` inputs: read a text, a .txt or a .jsonl file, and turn each input into the
canonical example of the data format the model was trained on (through ``tunelab.data.formats``).

A .jsonl line is a row of the training format (its column names): ``{"instruction", "input"}``,
``{"messages"}``, ``{"question", "context"}``, ``{"text", "text_pair"}``, or a plain
``{"text"}``/``{"prompt"}`` string, which becomes the user turn (or the text to classify).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunelab.config import ColumnsConfig
from tunelab.data.formats import ROLES, InvalidRow, classification_inputs, convert_row
from tunelab.data.rendering import Rendering
from tunelab.errors import TunelabError, first_line
from tunelab.modalities.registry import modality_for

Input = str | dict[str, Any]

INPUT_COLUMNS = {
    "classification": ("text", "text_pair"),
    "text": ("text",),
    "instruction": ("instruction", "input"),
    "chat": ("messages",),
    "qa": ("question", "context"),
}
PLAIN_KEYS = ({"text"}, {"prompt"})
BAD_BYTE = re.compile("[\udc80-\udcff]")  # undecodable bytes under errors="surrogateescape"


def read_input_rows(value: str) -> list[tuple[str, Input]]:
    """(where, input) pairs: a literal text, a .txt file (one per line) or a .jsonl file."""
    path = Path(value)
    is_file = _is_file(path)
    if path.suffix in (".txt", ".jsonl") and not is_file:
        raise TunelabError(f"--input {value}: no such file")
    if not is_file:
        return [("--input", value)]
    rows: list[tuple[str, Input]] = []
    for number, line, problem in text_lines(path):
        where = f"{path}:{number}"
        if problem is not None:
            raise TunelabError(f"{where}: {problem}; --input files are read as UTF-8")
        if not line.strip():
            continue
        line = line.rstrip("\r\n")
        rows.append((where, parse_json_line(where, line) if path.suffix == ".jsonl" else line))
    return rows


def read_inputs(value: str) -> list[Input]:
    """The inputs of ``--input``: strings, and training-format rows from .jsonl files."""
    return [item for _, item in read_input_rows(value)]


def parse_json_line(where: str, line: str) -> Input:
    """One .jsonl line: a row object (a lone ``text``/``prompt`` string comes back as a str)."""
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise TunelabError(
            f"{where}: malformed JSON ({first_line(exc)}); each line must be one JSON object"
        ) from None
    if not isinstance(row, dict):
        raise TunelabError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if set(row) in PLAIN_KEYS and isinstance(next(iter(row.values())), str):
        return next(iter(row.values()))
    return row


def input_example(rendering: Rendering, item: Input) -> dict[str, Any]:
    """The canonical example of one input, as the training data's format builds it."""
    fmt, columns = rendering.format, rendering.column_config
    if (modality := modality_for(fmt)) is not None:
        return modality.predict_example(item, columns)
    names = [getattr(columns, key) for key in INPUT_COLUMNS[fmt] if getattr(columns, key)]
    row = item
    if not isinstance(item, str | dict):
        raise InvalidRow(f"an input is a text or a row object, got {type(item).__name__}")
    if isinstance(item, dict) and not any(name in item for name in names):
        plain = item.get("text", item.get("prompt"))
        if not isinstance(plain, str):
            fields = ", ".join(repr(n) for n in names)
            raise InvalidRow(
                f"needs one of {fields} (the {fmt} columns it was trained on), or 'text'/'prompt'"
            )
        row = plain
    if isinstance(row, str):
        row = plain_row(fmt, columns, row)
    if fmt == "classification":
        return classification_inputs(row, columns)
    if fmt == "chat":
        row = {**row, columns.messages: open_turn(row[columns.messages])}
    return convert_row(row, fmt, columns)


def input_examples(rendering: Rendering, rows: list[tuple[str, Input]]) -> list[dict[str, Any]]:
    """Every input as an example; an unusable row is an error naming where it is."""
    examples = []
    for where, item in rows:
        try:
            examples.append(input_example(rendering, item))
        except InvalidRow as exc:
            raise TunelabError(f"{where}: {exc}") from None
    return examples


def media_rows(input: str | None, media: dict[str, str]) -> list[tuple[str, Input]]:
    """The one input of ``predict --image FILE`` (etc., with ``--input`` as its text)."""
    where = " ".join(f"--{key} {value}" for key, value in media.items())
    return [(where, {**media, **({"text": input} if input is not None else {})})]


def plain_row(fmt: str, columns: ColumnsConfig, text: str) -> dict[str, Any]:
    """A plain text as a row: the text to classify, the instruction, question or user turn."""
    if fmt == "chat":
        return {columns.messages: [{"role": "user", "content": text}]}
    key = {"instruction": columns.instruction, "qa": columns.question}.get(fmt, columns.text)
    return {key: text}


def open_turn(messages: Any) -> Any:
    """The conversation with an empty assistant turn added when it does not end with one."""
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return messages
    last = messages[-1].get("role", messages[-1].get("from"))
    if ROLES.get(last) == "assistant":
        return messages
    return [*messages, {"role": "assistant", "content": ""}]


def text_lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, problem) of every line of a text file; ``problem`` names the first
    byte that is not valid in UTF-8 (the line's text is then unusable), else None."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as fh:
        for number, line in enumerate(fh, start=1):
            bad = BAD_BYTE.search(line)
            problem = None
            if bad is not None:
                byte = ord(bad.group()) - 0xDC00
                problem = f"not valid UTF-8 (byte 0x{byte:02x} at column {bad.start() + 1})"
            yield number, line, problem


def _is_file(path: Path) -> bool:
    """``path.is_file()``, false for texts that cannot be file names (too long, NUL bytes)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
