"""`tunelab data prepare` / `tunelab data inspect` through the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from data_helpers import classification_rows, write_jsonl
from tunelab.cli import app
from tunelab.errors import TunelabError

TUNELAB = Path(sys.executable).parent / "tunelab"


@pytest.fixture
def config(tmp_path, tokenizer_dir) -> Path:
    rows = [*classification_rows(10), classification_rows(10)[0], {"text": "", "label": "a"}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    raw = {
        "model": {"name_or_path": str(tokenizer_dir)},
        "data": {
            "path": str(tmp_path / "d.jsonl"),
            "format": "classification",
            "cache_dir": str(tmp_path / "cache"),
        },
        "output": {"dir": str(tmp_path / "run")},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_prepare_prints_summary_and_writes_report(config, tmp_path):
    result = CliRunner().invoke(app, ["data", "prepare", str(config)])
    assert result.exit_code == 0, result.output
    assert "Data (classification, from files)" in result.output
    assert "train: 24 rows" in result.output
    assert "removed: empty 1, duplicates 1" in result.output
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["rows"] == {"train": 24, "validation": 3, "test": 3}
    assert report["labels"]["test"] == {"a": 1, "b": 1, "c": 1}
    assert set(report["token_lengths"]["train"]) == {"p50", "p90", "p99", "max", "mean"}
    again = CliRunner().invoke(app, ["data", "prepare", str(config)])
    assert "from cache" in again.output


def test_inspect_prints_tables(config):
    result = CliRunner().invoke(app, ["data", "inspect", str(config), "data.max_length=8"])
    assert result.exit_code == 0, result.output
    for expected in ("Splits (max_length 8)", "p99", "truncated", "Labels", "Cleaning"):
        assert expected in result.output
    assert re.search(r"│ duplicates +│ +1 │ d\.jsonl:31: ", result.output)
    assert re.search(r"│ empty +│ +1 │ d\.jsonl:32: ", result.output)
    assert re.search(r"│ cross_split_duplicates +│ +0 │", result.output)


def test_cli_errors_are_raised_as_tunelab_errors(config):
    result = CliRunner().invoke(app, ["data", "prepare", str(config), "data.path=missing.jsonl"])
    assert isinstance(result.exception, TunelabError)
    assert str(result.exception) == f"{config}: data.path: data file not found: missing.jsonl"


def test_main_prints_one_line_and_exits_2(config, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "ok", "label": "a"}\n{"text": \n')
    proc = subprocess.run(
        [str(TUNELAB), "data", "prepare", str(config)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {tmp_path / 'd.jsonl'}:2: malformed JSON line")
