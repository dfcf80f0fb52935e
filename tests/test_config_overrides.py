"""Command-line overrides: values arrive whole (a ``#`` is no comment), ``method.name`` switches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from train_helpers import write_classification_data
from tunelab.config import load_config
from tunelab.errors import ConfigError

BASE = {
    "model": {"name_or_path": "some/model"},
    "data": {"path": "train.jsonl", "format": "classification"},
    "method": {"name": "lora", "lora": {"r": 16}},
    "output": {"dir": "runs/x"},
}


def _raw(**method) -> dict:
    raw = json.loads(json.dumps(BASE))
    if method:
        raw["method"] = method
    return raw


def test_hash_in_an_override_value_stays_in_it():
    cfg = load_config(BASE, ["output.dir=runs/my run #1", "data.path=data #2/train.jsonl"])
    assert cfg.output.dir == "runs/my run #1"
    assert cfg.data.path == "data #2/train.jsonl"
    assert load_config(BASE, ["output.dir=#1"]).output.dir == "#1"


def test_override_values_are_still_typed_as_yaml():
    cfg = load_config(
        BASE,
        [
            "train.lr=1e-4",
            "model.gradient_checkpointing=true",
            "data.clean.keep_labels=[a, b]",
            "train.max_steps=7",
            "output.dir='quoted #3'",
        ],
    )
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == pytest.approx(1e-4)
    assert cfg.model.gradient_checkpointing is True
    assert cfg.data.clean.keep_labels == ["a", "b"]
    assert cfg.train.max_steps == 7
    assert cfg.output.dir == "quoted #3"


def test_method_name_override_replaces_the_files_method(capsys):
    cfg = load_config(_raw(name="lora", lora={"r": 16}), ["method.name=bitfit"])
    assert cfg.method.name == "bitfit"
    assert cfg.method.lora.r == 8  # the file's lora block is gone
    err = capsys.readouterr().err
    assert "note: method.name=bitfit given on the command line; dropped the file's " in err
    assert "method.lora settings" in err


def test_method_name_override_keeps_the_new_methods_settings():
    raw = _raw(name="lora", lora={"r": 16}, adapter={"kind": "houlsby"})
    with pytest.raises(ConfigError, match="settings block"):
        load_config(raw)  # two methods' blocks in the file
    cfg = load_config(raw, ["method.name=adapter", "method.adapter.reduction_factor=4"])
    assert cfg.method.name == "adapter" and cfg.method.settings.kind == "houlsby"
    assert cfg.method.settings.reduction_factor == 4 and cfg.method.lora.r == 8


def test_another_methods_block_in_the_file_is_still_refused():
    with pytest.raises(ConfigError) as info:
        load_config(_raw(name="bitfit", lora={"r": 16}))
    assert info.value.problems == [
        "method: settings block(s) lora given but method.name is 'bitfit'; remove them or set "
        "method.name: lora"
    ]
    with pytest.raises(ConfigError, match="settings block\\(s\\) lora given"):  # same name
        load_config(_raw(name="bitfit", lora={"r": 16}), ["method.name=bitfit"])
    with pytest.raises(ConfigError, match="settings block\\(s\\) lora given"):  # set by override
        load_config(_raw(name="lora", lora={"r": 16}), ["method.name=bitfit", "method.lora.r=4"])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "tunelab"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_trains_into_a_dir_with_a_hash_and_switches_method(tmp_path, tiny_bert_dir):
    data = write_classification_data(tmp_path / "train.jsonl", n=24)
    raw = {
        "model": {"name_or_path": str(tiny_bert_dir)},
        "data": {"path": str(data), "format": "classification", "max_length": 16},
        "method": {"name": "lora", "lora": {"r": 4}},
        "train": {"max_steps": 1, "batch_size": 4, "report_to": []},
        "eval": {"at_end": False},
        "output": {"dir": "unused"},
    }
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = _cli(
        "train", str(config), "output.dir=runs/my run #1", "method.name=bitfit", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "runs" / "my run #1"
    assert (run / "model" / "tunelab_method.json").is_file()
    assert not (tmp_path / "runs" / "my run").exists()
    assert json.loads((run / "model" / "tunelab_method.json").read_text())["method"] == "bitfit"
    assert "dropped the file's method.lora settings" in done.stderr
