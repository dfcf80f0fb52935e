"""``stages:`` in the run config: how a stage's overrides merge, and bad stage lists refused in
one line naming the key, from ``tunelab validate`` and ``tunelab train`` alike."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from data_helpers import classification_rows, write_jsonl
from tunelab.cli import main
from tunelab.config import dump_config, load_config, resolve_stages
from tunelab.errors import ConfigError


def raw_config(tmp_path: Path, model_dir: Path, stages: Any) -> dict[str, Any]:
    """A classification config on the tiny BERT with ``stages``."""
    data = write_jsonl(tmp_path / "train.jsonl", classification_rows(20))
    return {
        "model": {"name_or_path": str(model_dir)},
        "data": {"path": str(data), "format": "classification", "max_length": 32},
        "method": {"name": "lora", "lora": {"r": 8, "alpha": 16}},
        "train": {"lr": 1e-3, "warmup_ratio": 0.1, "epochs": 2, "report_to": []},
        "eval": {"at_end": False},
        "output": {"dir": str(tmp_path / "run")},
        "stages": stages,
    }


TWO_STAGES = [
    {
        "name": "probe",
        "method": {"name": "freeze", "freeze": {"top_n_layers": 0}},
        "train": {"lr": 1e-2, "max_steps": 30, "warmup_steps": 5},
        "data": {"max_length": 16},
    },
    {"name": "lora", "method": {"lora": {"r": 4}}, "train": {"epochs": 1}},
]


def test_stage_overrides_merge_over_the_top_level_sections(tmp_path, tiny_bert_dir):
    cfg = load_config(raw_config(tmp_path, tiny_bert_dir, TWO_STAGES))
    probe, lora = resolve_stages(cfg)
    assert probe.method.name == "freeze" and probe.method.freeze.top_n_layers == 0
    assert (probe.train.lr, probe.train.max_steps, probe.train.epochs) == (1e-2, 30, 2)
    # a stage's warmup replaces the top-level one (steps instead of a ratio)
    assert (probe.train.warmup_steps, probe.train.warmup_ratio) == (5, 0)
    assert (probe.data.max_length, lora.data.max_length) == (16, 32)
    # the same method name merges its settings over the top-level ones
    assert (lora.method.name, lora.method.lora.r, lora.method.lora.alpha) == ("lora", 4, 16)
    assert (lora.train.lr, lora.train.epochs, lora.train.warmup_ratio) == (1e-3, 1, 0.1)
    assert probe.stages is None and lora.output.dir == cfg.output.dir


def test_a_staged_config_dumps_and_reloads_and_a_plain_one_has_no_stages_key(
    tmp_path, tiny_bert_dir
):
    cfg = load_config(raw_config(tmp_path, tiny_bert_dir, TWO_STAGES))
    dump_config(cfg, tmp_path / "staged.yaml")
    assert load_config(tmp_path / "staged.yaml") == cfg
    plain = raw_config(tmp_path, tiny_bert_dir, None)
    del plain["stages"]
    dump_config(load_config(plain), tmp_path / "plain.yaml")
    assert "stages" not in yaml.safe_load((tmp_path / "plain.yaml").read_text())


BAD = {
    "empty": ([], "stages: the list is empty; give at least one stage"),
    "model key": (
        [{"name": "a", "model": {"name_or_path": "x"}}],
        "stages[0].model: a stage overrides only method, train, data (and has a name); "
        "set model at the top level",
    ),
    "misspelt train key": (
        [{"name": "a"}, {"name": "b", "train": {"lrr": 1e-3}}],
        "stages[1].train.lrr: unknown key; did you mean 'stages[1].train.lr'?",
    ),
    "bad value": ([{"name": "a", "train": {"lr": -1}}], "stages[0].train.lr: got -1; must be > 0"),
    "same name": (
        [{"name": "a"}, {"name": "a"}],
        "stages[1].name: 'a' is already stages[0]'s name",
    ),
    "unknown method": (
        [{"name": "a", "method": {"name": "lorax"}}],
        "stages[0].method.name: got 'lorax'; expected one of",
    ),
    "adapter before the last": (
        [{"name": "a", "method": {"name": "adapter"}}, {"name": "b"}],
        "stages[0].method.name: adapter cannot hand its weights on to a later stage",
    ),
}


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """``tunelab ARGS`` in process: exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["tunelab", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
@pytest.mark.parametrize("command", ["validate", "train"])
def test_a_bad_stage_list_is_one_line_naming_the_key(
    case, command, tmp_path, tiny_bert_dir, monkeypatch, capsys
):
    stages, message = BAD[case]
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw_config(tmp_path, tiny_bert_dir, stages)))
    code, err = run_cli([command, str(config)], monkeypatch, capsys)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert message in " ".join(err.split()), err
    assert not (tmp_path / "run").exists()  # refused before anything is written
    with pytest.raises(ConfigError):
        load_config(config)


def test_validate_checks_each_stage_data_on_disk(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    stages = [{"name": "clean", "data": {"path": str(tmp_path / "clean.jsonl")}}, {"name": "all"}]
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw_config(tmp_path, tiny_bert_dir, stages)))
    code, err = run_cli(["validate", str(config)], monkeypatch, capsys)
    assert code == 2
    assert "stages[0]: data.path" in err and "clean.jsonl" in err, err


def test_validate_accepts_a_good_stage_list(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw_config(tmp_path, tiny_bert_dir, TWO_STAGES)))
    monkeypatch.setattr(sys, "argv", ["tunelab", "validate", str(config)])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    assert capsys.readouterr().out == "OK\n"
