"""``tunelab tune``: an Optuna study over real tiny runs (pruning, resuming, best config), and
one-line errors for a bad search space."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest
import yaml

from train_helpers import lm_raw, write_text_data
from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.tune.space import parse_param, parse_space
from tunelab.tune.study import tune


def write_config(tmp_path, model_dir):
    data = write_text_data(tmp_path / "text.jsonl", n=40)
    split = {"split": {"train": 0.8, "validation": 0.2, "test": 0.0}}
    raw = lm_raw(
        model_dir, data, tmp_path / "run", {"max_steps": 4, "eval_every": 2}, data_extra=split
    )
    raw["method"] = {"name": "full"}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_study_prunes_resumes_and_writes_the_best_config(tiny_llama_dir, tmp_path):
    config = write_config(tmp_path, tiny_llama_dir)
    out = tmp_path / "run" / "tune"
    out.mkdir(parents=True)
    url = f"sqlite:///{out / 'study.db'}"
    seeded = optuna.create_study(storage=url, study_name="search", direction="minimize")
    for lr in (1e-2, 2e-2, 1e-7):  # two good trials first, then one that barely learns
        seeded.enqueue_trial({"train.lr": lr})

    space = ["train.lr=1e-7:1e-1:log"]
    first = tune(config, space, trials=3)
    study = optuna.load_study(study_name="search", storage=url)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]
    # the pruned trial fell behind the median of the earlier ones at its first report
    reported = [t.intermediate_values for t in study.trials]
    step = min(reported[2])
    assert reported[2][step] > max(reported[0][step], reported[1][step])
    best = min(study.trials[:2], key=lambda t: t.value)
    assert first.best_value == best.value and first.finished_trials == 3
    saved = json.loads((out / "best.json").read_text())
    assert saved["params"] == best.params and saved["trial"] == best.number
    best_cfg = load_config(out / "best_config.yaml")
    assert best_cfg.train.lr == best.params["train.lr"]
    assert best_cfg.output.dir == str(tmp_path / "run")  # the original run directory
    assert (out / "trials" / "trial-0000" / "train_summary.json").is_file()

    again = tune(config, space, trials=4)  # a stopped search resumes: one more trial
    study = optuna.load_study(study_name="search", storage=url)
    assert len(study.trials) == 4 and again.finished_trials == 4


def test_space_parsing():
    lr = parse_param("train.lr=1e-5:1e-3:log")
    assert (lr.key, lr.low, lr.high, lr.log, lr.integer) == ("train.lr", 1e-5, 1e-3, True, False)
    rank = parse_param("method.lora.r=4:64:int:log")
    assert rank.integer and rank.log and rank.corners() == [4, 64]
    assert parse_param("train.batch_size=8,16").choices == (8, 16)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.lr=1e-3:1e-5:log", "LOW 0.001 must be below HIGH 1e-05"),
        ("train.lr=0:1e-3:log", "a log range needs LOW > 0"),
        ("train.lr=1e-5:1e-3:logg", "unknown flag 'logg'"),
        ("train.lr=a:b", "is not a number"),
        ("train.lr", "not of the form KEY=SPEC"),
        ("train.batch_size=8", "at least two choices"),
        ("method.lora.r=2.5:8:int", "whole LOW and HIGH"),
    ],
)
def test_bad_space_items_name_the_fix(item, message):
    with pytest.raises(TunelabError, match="--space") as info:
        parse_space([item])
    assert message in str(info.value) and "KEY=LOW:HIGH" in str(info.value)


def test_bad_space_key_or_value_is_one_line(tiny_llama_dir, tmp_path):
    config = write_config(tmp_path, tiny_llama_dir)
    done = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "tune", str(config), "--space", "train.lrr=1e-5:1e-3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "--space train.lrr" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(TunelabError, match=r"--space train\.lr=-1\.0: .*train\.lr"):
        tune(config, ["train.lr=-1:1"], trials=1)
    assert not (tmp_path / "run" / "tune").exists()  # nothing written before the check


def test_missing_optuna_names_the_extra(monkeypatch):
    from tunelab.tune.study import load_optuna

    monkeypatch.setitem(sys.modules, "optuna", None)  # what an install without the extra sees
    with pytest.raises(TunelabError, match=r"pip install 'tunelab\[tune\]'"):
        load_optuna()
