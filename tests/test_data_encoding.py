"""data.encoding: files in another encoding than UTF-8 say so and how to read them."""

from __future__ import annotations

import pytest

from data_helpers import prepare
from tunelab.errors import TunelabError

LATIN1 = "text,label\ncaf\xe9 au lait,a\nna\xefve r\xe9sum\xe9,b\nso\xfbl,a\nd\xe9j\xe0 vu,b\n"


def test_latin1_csv_names_the_encoding_and_data_encoding_reads_it(tmp_path, tokenizer_dir):
    path = tmp_path / "reviews.csv"
    path.write_bytes(LATIN1.encode("latin-1"))
    with pytest.raises(TunelabError) as info:
        prepare(tmp_path, tokenizer_dir, path=str(path), format="classification")
    message = str(info.value)
    assert message.startswith(f"{path}: cannot be read as csv (")
    assert message.endswith(
        "it was read as utf-8 (data.encoding): set data.encoding to the file's encoding "
        "(e.g. latin-1, cp1252)"
    )
    assert "\n" not in message
    prepared = prepare(
        tmp_path, tokenizer_dir, path=str(path), format="classification", encoding="latin-1"
    )
    texts = {ex["text"] for split in prepared.examples.values() for ex in split}
    assert texts == {"café au lait", "naïve résumé", "soûl", "déjà vu"}


def test_jsonl_is_read_in_data_encoding_and_an_unknown_one_is_refused(tmp_path, tokenizer_dir):
    rows = "".join(f'{{"text": "r\xe9sum\xe9 {i}", "label": "{i % 2}"}}\n' for i in range(6))
    (tmp_path / "d.jsonl").write_bytes(rows.encode("cp1252"))
    prepared = prepare(
        tmp_path, tokenizer_dir, path=str(tmp_path / "d.jsonl"), format="classification",
        encoding="cp1252",
    )  # fmt: skip
    texts = {ex["text"] for split in prepared.examples.values() for ex in split}
    assert len(texts) >= 4 and texts <= {f"résumé {i}" for i in range(6)}
    with pytest.raises(TunelabError, match=r"data\.encoding 'klingon': unknown"):
        prepare(
            tmp_path, tokenizer_dir, path=str(tmp_path / "d.jsonl"), format="classification",
            encoding="klingon",
        )  # fmt: skip
