"""The run config: validation, error messages, overrides, schema and the CLI commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunelab.config import RunConfig, json_schema, load_config
from tunelab.errors import ConfigError

BASE = {
    "model": {"name_or_path": "some/model"},
    "data": {"path": "train.jsonl", "format": "chat"},
    "output": {"dir": "runs/x"},
}


def _with(**sections) -> dict:
    raw = json.loads(json.dumps(BASE))
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def _problems(raw: dict, overrides: list[str] = ()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(raw, list(overrides))
    return info.value.problems


def test_minimal_config_gets_defaults():
    cfg = load_config(BASE)
    assert cfg.task == "causal_lm"
    assert cfg.method.name == "lora" and cfg.method.settings.r == 8
    assert cfg.train.scheduler == "cosine" and cfg.data.max_length == 512
    assert cfg.run_dir == Path("runs/x")


def test_task_inferred_from_classification_format():
    cfg = load_config(_with(data={"format": "classification"}))
    assert cfg.task == "classification"


def test_unknown_keys_name_path_and_closest_key():
    problems = _problems(_with(model={"dtpe": "float32"}, train={"lerning_rate": 1}))
    assert "model.dtpe: unknown key; did you mean 'model.dtype'?" in problems
    assert any(p.startswith("train.lerning_rate: unknown key") for p in problems)


def test_unknown_key_without_close_match_lists_valid_keys():
    (problem,) = _problems(_with(output={"zzz": 1}))
    assert problem == "output.zzz: unknown key; valid keys here: attention_examples, dir, report"


def test_unknown_top_level_section():
    (problem,) = _problems({**BASE, "trian": {}})
    assert problem == "trian: unknown key; did you mean 'train'?"


def test_type_and_range_errors_name_key_value_and_allowed():
    problems = _problems(_with(train={"lr": "fast", "batch_size": 0, "scheduler": "cosin"}))
    assert "train.batch_size: got 0; must be > 0" in problems
    assert any(p.startswith("train.lr: got 'fast'; expected a valid number") for p in problems)
    assert (
        "train.scheduler: got 'cosin'; expected one of 'constant', 'linear' or 'cosine'" in problems
    )


def test_all_problems_reported_at_once():
    problems = _problems(
        _with(model={"dtype": "int3"}, train={"epochs": -1}, eval={"batch_size": "x"}),
    )
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {"model.dtype", "train.epochs", "eval.batch_size"}


def test_missing_required_keys():
    problems = _problems({"data": {"format": "text"}})
    assert "model: required key is missing" in problems
    assert "data.path: required key is missing" in problems
    assert "output: required key is missing" in problems


def test_split_fractions_must_sum_to_at_most_one():
    (problem,) = _problems(_with(data={"split": {"train": 0.8, "validation": 0.2, "test": 0.1}}))
    assert problem.startswith("data.split: split fractions train+validation+test sum to 1.1")


def test_label_column_rejected_for_language_modelling_format():
    (problem,) = _problems(_with(data={"format": "text", "columns": {"label": "y"}}))
    assert "columns.label is set but format is 'text'" in problem


def test_method_settings_block_must_match_name():
    (problem,) = _problems(_with(method={"name": "lora", "adapter": {"kind": "houlsby"}}))
    assert "settings block(s) adapter given but method.name is 'lora'" in problem


def test_freeze_needs_no_settings_block():
    cfg = load_config(_with(method={"name": "freeze"}))
    assert cfg.method.settings.top_n_layers is None and cfg.method.settings.patterns is None
    assert cfg.method.settings.train_head is True


def test_method_cross_field_checks():
    assert (
        "give top_n_layers or patterns, not both"
        in _problems(
            _with(method={"name": "freeze", "freeze": {"top_n_layers": 2, "patterns": ["x"]}})
        )[0]
    )
    assert (
        "init: text needs init_text"
        in _problems(_with(method={"name": "prompt_tuning", "prompt_tuning": {"init": "text"}}))[0]
    )
    assert (
        "bottleneck_size or reduction_factor, not both"
        in _problems(
            _with(
                method={"name": "adapter", "adapter": {"bottleneck_size": 8, "reduction_factor": 4}}
            )
        )[0]
    )


def test_train_cross_field_checks():
    assert (
        "warmup_steps or warmup_ratio"
        in _problems(_with(train={"warmup_steps": 10, "warmup_ratio": 0.1}))[0]
    )
    assert "train.llrd applies to method full or freeze" in _problems(_with(train={"llrd": 0.9}))[0]
    cfg = load_config(_with(method={"name": "full"}, train={"llrd": 0.9}))
    assert cfg.train.llrd == 0.9


def test_task_must_fit_format():
    (problem,) = _problems(_with(model={"task": "classification"}))
    assert "model.task classification needs data.format classification" in problem


def test_overrides_are_applied_and_type_checked():
    cfg = load_config(BASE, ["train.lr=1e-4", "data.max_length=256", "method.lora.r=16"])
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.data.max_length == 256 and cfg.method.lora.r == 16
    problems = _problems(BASE, ["train.lr=abc", "train.epoch=2", "oops"])
    assert "override 'oops' is not of the form key.path=value" in problems


def test_override_type_errors_after_parsing():
    problems = _problems(BASE, ["train.lr=abc", "train.epoch=2"])
    assert any(p.startswith("train.lr: got 'abc'") for p in problems)
    assert "train.epoch: unknown key; did you mean 'train.epochs'?" in problems


def test_yaml_file_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name_or_path: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: .*not valid YAML at line"):
        load_config(bad)


def test_schema_has_a_description_for_every_field():
    schema = json_schema()
    undocumented = []

    def walk(node: dict, path: str) -> None:
        for name, prop in node.get("properties", {}).items():
            if "description" not in prop:
                undocumented.append(f"{path}{name}")

    walk(schema, "")
    for name, definition in schema.get("$defs", {}).items():
        walk(definition, f"{name}.")
    assert undocumented == []
    assert set(schema["properties"]) == set(RunConfig.model_fields)


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "tunelab"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_cli_validate_ok_and_problems(tmp_path):
    good = tmp_path / "good.yaml"
    chat = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    (tmp_path / "train.jsonl").write_text(json.dumps(chat) + "\n")
    good.write_text(yaml.safe_dump(BASE))  # a hub id and a data file relative to the cwd
    result = _cli("validate", str(good), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "OK"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with(train={"lr": -1, "epochz": 1})))
    result = _cli("validate", str(bad), "data.max_length=0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for needle in (
        "train.lr: got -1; must be > 0",
        "did you mean 'train.epochs'",
        "data.max_length: got 0; must be > 0",
        "3 problem(s)",
    ):
        assert needle in result.stderr


def test_cli_schema_prints_json_schema():
    result = _cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "RunConfig"
    assert "train" in schema["properties"]


def test_resolved_config_dump_reloads_to_the_same_config(tmp_path):
    from tunelab.config import dump_config

    cfg = load_config(_with(method={"name": "adapter", "adapter": {"kind": "houlsby"}}))
    dump_config(cfg, tmp_path / "config.yaml")
    dumped = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert dumped["method"]["lora"]["r"] == 8  # every default is written out
    assert load_config(tmp_path / "config.yaml") == cfg
