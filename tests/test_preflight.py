"""Bad input caught by ``tunelab validate`` and at the start of ``train`` / ``data prepare``."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from data_helpers import classification_rows, write_jsonl
from tunelab.cli import main
from tunelab.config import EarlyStoppingConfig, load_config
from tunelab.errors import ConfigError
from tunelab.metric_catalog import VALIDATION_METRICS, infer_mode
from tunelab.testing import WORDS

TUNELAB = Path(sys.executable).parent / "tunelab"


def cls_raw(tmp_path: Path, model_dir: Path, **sections: Any) -> dict[str, Any]:
    """A valid classification config on the tiny BERT (``sections`` update its sections)."""
    data = write_jsonl(tmp_path / "train.jsonl", classification_rows(10))
    raw: dict[str, Any] = {
        "model": {"name_or_path": str(model_dir)},
        "data": {"path": str(data), "format": "classification", "max_length": 32},
        "method": {"name": "full"},
        "train": {"max_steps": 1, "report_to": []},
        "eval": {"at_end": False},
        "output": {"dir": str(tmp_path / "run")},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def lm_raw(tmp_path: Path, model_dir: Path, fmt: str = "text", **sections: Any) -> dict[str, Any]:
    """A valid causal-LM config (text rows, or instruction rows for ``fmt='instruction'``)."""
    if fmt == "text":
        rows = [{"text": f"line {i} of some text"} for i in range(20)]
    else:
        rows = [{"instruction": f"say {i}", "output": f"{i}"} for i in range(20)]
    raw = cls_raw(tmp_path, model_dir, **sections)
    raw["data"].update(path=str(write_jsonl(tmp_path / "lm.jsonl", rows)), format=fmt)
    raw["method"] = {"name": "lora", "lora": {"r": 2}}
    return raw


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``tunelab ARGS`` through the console-script entry point, in process."""
    monkeypatch.setattr(sys, "argv", ["tunelab", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def validate(raw: dict[str, Any], tmp_path: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    return run_cli(["validate", str(config)], monkeypatch, capsys)


def assert_refused(result: tuple[int, str, str], tmp_path: Path, message: str) -> None:
    """Exit 2 with one line: ``error: <config>: <message>...``."""
    code, out, err = result
    assert code == 2, out + err
    assert "OK" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {tmp_path / 'run.yaml'}: {message}"), lines[0]


# ----------------------------------------------------------------------------- early stopping


def test_early_stopping_mode_is_inferred_from_the_metric():
    assert EarlyStoppingConfig().mode == "min"
    assert EarlyStoppingConfig(metric="eval_accuracy").mode == "max"
    assert EarlyStoppingConfig(metric="eval_f1_macro").mode == "max"
    assert EarlyStoppingConfig(metric="eval_perplexity").mode == "min"
    assert EarlyStoppingConfig(metric="eval_accuracy", mode="min").mode == "min"  # explicit
    expected = {"eval_loss": "min", "eval_bleu": "max", "eval_rougeL": "max", "auc": "max"}
    expected |= {"eval_meteor": "max", "exact_match": "max", "eval_em": "max", "x": None}
    assert {name: infer_mode(name) for name in expected} == expected
    with pytest.raises(ConfigError, match=r"train\.early_stopping: cannot tell whether 'eval_x'"):
        load_config(
            {
                "model": {"name_or_path": "org/model"},
                "data": {"path": "d.jsonl", "format": "text"},
                "train": {"early_stopping": {"metric": "eval_x"}},
                "output": {"dir": "run"},
            }
        )


def test_accuracy_early_stopping_keeps_the_most_accurate_checkpoint(tiny_bert_dir, tmp_path):
    from safetensors.torch import load_file

    from tunelab.train import train

    rng, labels = random.Random(0), ("sport", "tech", "film")
    rows = []
    for i in range(120):  # the first word is the label 60% of the time: accuracy moves
        label = labels[i % 3]
        cue = label if rng.random() < 0.6 else rng.choice(labels)
        words = " ".join(rng.choice(WORDS) for _ in range(6))
        rows.append({"text": f"{cue} {words}", "label": label})
    raw = cls_raw(tmp_path, tiny_bert_dir)
    raw["data"].update(path=str(write_jsonl(tmp_path / "train.jsonl", rows)))
    raw["data"]["cache_dir"] = str(tmp_path / "cache")
    raw["train"] = {
        "max_steps": 12,
        "eval_every": 2,
        "keep_last": 1,
        "batch_size": 8,
        "lr": 3e-3,
        "seed": 3,
        "report_to": [],
        "early_stopping": {"metric": "eval_accuracy"},  # no mode: inferred max
    }
    result = train(load_config(raw))
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    evals = [r for r in map(json.loads, lines) if r["type"] == "eval"]
    produced = {key for key in evals[0] if key.startswith("eval_")}
    assert produced == set(VALIDATION_METRICS["classification"])  # what preflight allows
    accuracies = [r["eval_accuracy"] for r in evals]
    assert max(accuracies) > min(accuracies)  # the choice of checkpoint matters
    best = max(evals, key=lambda r: r["eval_accuracy"])  # the first of equal bests
    assert (result.best_step, result.best_metric) == (best["step"], best["eval_accuracy"])
    saved = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    ckpt = tmp_path / "run" / "checkpoints" / f"step-{best['step']}" / "trainable.safetensors"
    for name, value in load_file(str(ckpt)).items():
        assert (saved[name] == value).all(), name


def test_contradicting_mode_is_a_warning_in_validate_and_train(
    tiny_bert_dir, tmp_path, monkeypatch, capsys
):
    from rich.console import Console

    from tunelab.preflight import check_run

    stopping = {"early_stopping": {"metric": "eval_accuracy", "mode": "min"}}
    raw = cls_raw(tmp_path, tiny_bert_dir, train=stopping)
    code, out, err = validate(raw, tmp_path, monkeypatch, capsys)
    warning = (
        "warning: train.early_stopping.mode is 'min' but eval_accuracy is better higher: the "
        "checkpoint with the lowest value is kept; remove mode to use 'max'"
    )
    assert (code, out.strip(), err.strip()) == (0, "OK", warning)
    console = Console(record=True, width=400)
    check_run(load_config(raw), console)  # what train() calls first
    assert console.export_text().strip() == warning


# ----------------------------------------------------------------------------- validate


def _missing_column(raw):
    raw["data"]["columns"] = {"text": "body"}


def _csv_missing_column(raw):
    csv = Path(raw["data"]["path"]).with_suffix(".csv")
    csv.write_text("sentence,label\nhello,a\nbye,b\n")
    raw["data"]["path"] = str(csv)


def _folder_as_jsonl(raw):
    folder = Path(raw["data"]["path"]).parent / "folder.jsonl"
    (folder / "a").mkdir(parents=True)
    raw["data"].update(path=str(folder), file_type="jsonl")


def _no_config_json(raw):
    model = Path(raw["data"]["path"]).parent / "model"
    model.mkdir()
    (model / "tokenizer.json").write_text("{}")
    raw["model"]["name_or_path"] = str(model)


def _broken_config_json(raw):
    model = Path(raw["data"]["path"]).parent / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": ')
    raw["model"]["name_or_path"] = str(model)


def _gguf_file_as_model(raw):
    gguf = Path(raw["data"]["path"]).parent / "m.gguf"
    gguf.write_bytes(b"GGUF")
    raw["model"]["name_or_path"] = str(gguf)


def _no_test_rows(raw):
    raw["data"]["split"] = {"train": 1.0, "validation": 0.0, "test": 0.0}
    raw["eval"]["at_end"] = True


CLS_CASES = {
    "bleu_for_classification": (
        lambda raw: raw["eval"].update(metrics=["accuracy", "bleu"]),
        "eval.metrics: bleu do not apply to classification with data.format classification",
    ),
    "missing_model_dir": (
        lambda raw: raw["model"].update(name_or_path="/no/such/model"),
        "model.name_or_path: /no/such/model does not exist",
    ),
    "relative_missing_model_dir": (
        lambda raw: raw["model"].update(name_or_path="./models/none"),
        "model.name_or_path: ./models/none does not exist",
    ),
    "pkg_model_not_installed": (
        lambda raw: raw["model"].update(name_or_path="pkg://no_such_pkg_xyz/model"),
        "model.name_or_path: pkg://no_such_pkg_xyz/model: package 'no_such_pkg_xyz' is not "
        "installed",
    ),
    "pkg_model_missing_inside_package": (
        lambda raw: raw["model"].update(name_or_path="pkg://tunelab/no_model_here"),
        "model.name_or_path: pkg://tunelab/no_model_here does not exist",
    ),
    "model_dir_without_config_json": (
        _no_config_json,
        "model.name_or_path: ",
    ),
    "model_config_json_broken": (_broken_config_json, "model.name_or_path: "),
    "model_is_a_gguf_file": (_gguf_file_as_model, "model.name_or_path: "),
    "gguf_file_missing": (
        lambda raw: raw["model"].update(gguf_file="none.gguf"),
        "model.gguf_file 'none.gguf': no such file in ",
    ),
    "missing_data_file": (
        lambda raw: raw["data"].update(path="/no/such/train.jsonl"),
        "data.path: data file not found: /no/such/train.jsonl",
    ),
    "missing_test_file": (
        lambda raw: raw["data"].update(test_path="missing_test.jsonl"),
        "data.test_path: data file not found: missing_test.jsonl",
    ),
    "folder_with_file_type_jsonl": (_folder_as_jsonl, "data.path: "),
    "missing_column": (_missing_column, "data.columns.text: column 'body' is not in "),
    "missing_csv_column": (_csv_missing_column, "data.columns.text: column 'text' is not in "),
    "freeze_pattern_not_a_regex": (
        lambda raw: raw.update(method={"name": "freeze", "freeze": {"patterns": ["layer.(1"]}}),
        "method.freeze.patterns: 'layer.(1' is not a valid regex (missing ), unterminated",
    ),
    "lr_multiplier_not_a_regex": (
        lambda raw: raw["train"].update(lr_multipliers={"classifier[": 2.0}),
        "train.lr_multipliers: 'classifier[' is not a valid regex (unterminated character set",
    ),
    "no_test_rows_for_the_end_evaluation": (
        _no_test_rows,
        "eval.split: the 'test' split gets no rows (data.split.test is 0 and there is no "
        "data.test_path); set data.split.test > 0, give data.test_path, or set eval.at_end: false",
    ),
    "max_length_above_bert_positions": (
        lambda raw: raw["data"].update(max_length=300),
        "data.max_length: 300 is above the model's position limit 256 (max_position_embeddings in ",
    ),
}


@pytest.mark.parametrize("case", list(CLS_CASES), ids=list(CLS_CASES))
def test_validate_refuses(case, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    change, message = CLS_CASES[case]
    raw = cls_raw(tmp_path, tiny_bert_dir)
    monkeypatch.chdir(tmp_path)
    assert validate(raw, tmp_path, monkeypatch, capsys)[:2] == (0, "OK\n")
    change(raw)
    result = validate(raw, tmp_path, monkeypatch, capsys)
    assert_refused(result, tmp_path, message)
    err = result[2]
    if case == "model_dir_without_config_json":
        assert "model has no config.json (not a Transformers model directory" in err
    if case == "model_config_json_broken":
        assert "config.json is not valid JSON" in err
    if case == "model_is_a_gguf_file":
        assert "m.gguf is a file; give its directory and model.gguf_file: m.gguf" in err
    if case == "folder_with_file_type_jsonl":
        assert "folder.jsonl is a folder, but data.file_type is jsonl" in err


LM_CASES = {
    "accuracy_on_causal_lm": (
        "text",
        {"train": {"early_stopping": {"metric": "eval_accuracy"}}},
        "train.early_stopping.metric: 'eval_accuracy' is not computed during validation of a "
        "causal_lm run; choose one of eval_loss, eval_perplexity",
    ),
    "bleu_is_never_a_validation_metric": (
        "instruction",
        {"train": {"early_stopping": {"metric": "eval_bleu"}}},
        "train.early_stopping.metric: 'eval_bleu' is not computed during validation",
    ),
    "exact_match_needs_qa": (
        "instruction",
        {"eval": {"metrics": ["exact_match"]}},
        "eval.metrics: exact_match do not apply to causal_lm with data.format instruction",
    ),
    "max_length_above_gpt2_positions": (
        "text",
        {"data": {"max_length": 1000}},
        "data.max_length: 1000 is above the model's position limit 256 (n_positions in ",
    ),
}


@pytest.mark.parametrize("case", list(LM_CASES), ids=list(LM_CASES))
def test_validate_refuses_for_causal_lm(case, tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    fmt, sections, message = LM_CASES[case]
    raw = lm_raw(tmp_path, tiny_gpt2_dir, fmt)
    assert validate(raw, tmp_path, monkeypatch, capsys)[:2] == (0, "OK\n")
    for name, values in sections.items():
        raw[name].update(values)
    assert_refused(validate(raw, tmp_path, monkeypatch, capsys), tmp_path, message)


def test_validate_lists_every_problem_at_once(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    raw = cls_raw(tmp_path, tiny_bert_dir)
    raw["data"].update(path="/no/data.jsonl", max_length=999)
    raw["eval"].update(metrics=["rouge"])
    code, _, err = validate(raw, tmp_path, monkeypatch, capsys)
    assert code == 2
    assert f"error: {tmp_path / 'run.yaml'}: 3 problem(s) in the config" in err
    for key in ("data.path: ", "data.max_length: 999", "eval.metrics: rouge"):
        assert f"  - {key}" in err


def test_meteor_without_wordnet_names_the_setup_step(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    import nltk.data

    raw = lm_raw(tmp_path, tiny_gpt2_dir, "instruction", eval={"metrics": ["bleu", "meteor"]})
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty_nltk_data")])
    assert_refused(
        validate(raw, tmp_path, monkeypatch, capsys),
        tmp_path,
        "eval.metrics: METEOR needs WordNet for nltk; install it with "
        "`python -m tunelab.evaluate.wordnet_setup`",
    )


def test_hub_ids_are_left_to_the_loader(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    raw = cls_raw(tmp_path, tiny_bert_dir, model={"name_or_path": "some-org/some-model"})
    monkeypatch.chdir(tmp_path)
    assert validate(raw, tmp_path, monkeypatch, capsys)[:2] == (0, "OK\n")
    (tmp_path / "some-org").mkdir()  # now the first part exists here: it is a local path
    assert_refused(
        validate(raw, tmp_path, monkeypatch, capsys),
        tmp_path,
        "model.name_or_path: some-org/some-model does not exist",
    )


# ----------------------------------------------------------------------------- train, data


def test_train_refuses_before_writing_anything(tiny_gpt2_dir, tmp_path):
    raw = lm_raw(tmp_path, tiny_gpt2_dir, "instruction")
    raw["train"]["early_stopping"] = {"metric": "eval_bleu"}
    raw["data"]["max_length"] = 512
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [str(TUNELAB), "train", str(config)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "error: 2 problem(s) in the config" in done.stderr
    assert "  - data.max_length: 512 is above the model's position limit 256" in done.stderr
    assert "  - train.early_stopping.metric: 'eval_bleu' is not computed" in done.stderr
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_test_split_rounded_to_no_rows(tiny_bert_dir, tmp_path):
    from tunelab.train import train

    raw = cls_raw(tmp_path, tiny_bert_dir)  # 10 rows per label: 1% of them rounds to none
    raw["data"]["split"] = {"train": 0.8, "validation": 0.1, "test": 0.01}
    raw["eval"]["at_end"] = True
    with pytest.raises(ConfigError) as info:
        train(load_config(raw))
    assert str(info.value) == (
        "eval.split: the data has no 'test' rows after splitting and cleaning (splits: train, "
        "validation); raise data.split.test, give data.test_path, or set eval.at_end: false"
    )
    assert not (tmp_path / "run" / "model").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_refuses_a_folder_read_as_jsonl(tiny_bert_dir, tmp_path):
    from tunelab.train import train

    (tmp_path / "rows" / "a").mkdir(parents=True)
    raw = cls_raw(tmp_path, tiny_bert_dir)
    raw["data"].update(path=str(tmp_path / "rows"), file_type="jsonl")
    with pytest.raises(
        ConfigError, match=r"data\.path: .*rows is a folder, but data\.file_type is"
    ):
        train(load_config(raw))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["prepare", "inspect"])
def test_data_commands_refuse_a_folder_read_as_jsonl(
    command, tokenizer_dir, tmp_path, monkeypatch, capsys
):
    (tmp_path / "rows.jsonl" / "a").mkdir(parents=True)
    raw = cls_raw(tmp_path, tokenizer_dir)  # data prepare needs only the tokenizer
    raw["data"].update(path=str(tmp_path / "rows.jsonl"), file_type="jsonl")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = run_cli(["data", command, str(config)], monkeypatch, capsys)
    assert_refused(
        result,
        tmp_path,
        f"data.path: {tmp_path / 'rows.jsonl'} is a folder, but data.file_type is jsonl; name "
        "a .jsonl file, or set data.file_type: folder for one sub-folder of .txt files per label",
    )
    assert not (tmp_path / "run").exists()


def test_valid_regexes_and_freeze_settings_still_load():
    base = {
        "model": {"name_or_path": "org/model"},
        "data": {"path": "d.jsonl", "format": "text"},
        "output": {"dir": "run"},
    }
    top = load_config({**base, "method": {"name": "freeze", "freeze": {"top_n_layers": 1}}})
    assert (top.method.freeze.top_n_layers, top.method.freeze.patterns) == (1, None)
    pattern = {"name": "freeze", "freeze": {"patterns": [r"layers\.1\."]}}
    cfg = load_config({**base, "method": pattern, "train": {"lr_multipliers": {"lm_head": 2}}})
    assert cfg.method.freeze.patterns == [r"layers\.1\."]
    assert cfg.train.lr_multipliers == {"lm_head": 2.0}
