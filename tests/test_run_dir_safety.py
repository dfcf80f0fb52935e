"""An earlier run's results are never silently replaced: a finished run is reported, not
re-run; a fresh start over old results needs --no-resume and removes only tunelab's files;
evaluating the base model writes to eval_base/."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from train_helpers import metrics, write_classification_data
from tunelab.cli import app
from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.train import train
from tunelab.train.previous_run import clear_outputs, is_tunelab_card

STEPS = 4


def raw_config(model_dir: Path, data: Path, out: Path, **train_extra) -> dict:
    """Full fine-tuning of the tiny BERT for STEPS steps, evaluated at the end."""
    return {
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "path": str(data),
            "format": "classification",
            "max_length": 32,
            "cache_dir": str(out.parent / "data-cache"),
        },
        "method": {"name": "full"},
        "train": {
            "batch_size": 8,
            "lr": 2e-3,
            "max_steps": STEPS,
            "save_every": 2,
            "report_to": [],
            **train_extra,
        },
        "eval": {"at_end": True, "metrics": ["accuracy"]},
        "output": {"dir": str(out)},
    }


@pytest.fixture(scope="module")
def finished(tiny_bert_dir, tmp_path_factory):
    """A finished run (model, summary, evaluation, checkpoints) and its config file."""
    root = tmp_path_factory.mktemp("finished")
    data = write_classification_data(root / "cls.jsonl", n=60)
    run = root / "run"
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump(raw_config(tiny_bert_dir, data, run)), encoding="utf-8")
    result = train(load_config(config))
    assert result.steps == STEPS and (run / "eval_results.json").is_file()
    return config, run


def copy_run(finished, tmp_path: Path, **train_extra) -> tuple[Path, Path]:
    """A copy of the finished run and a config pointing at it (``train_extra`` merged)."""
    config, run = finished
    target = tmp_path / "run"
    shutil.copytree(run, target)
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["output"]["dir"] = str(target)
    raw["train"].update(train_extra)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path, target


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_finished_run_says_so_and_leaves_its_records_alone(finished, tmp_path):
    config, run = copy_run(finished, tmp_path)
    before = snapshot(run)
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 2, result.output
    assert "already trained with this config (4 steps, completed)" in lines[0]
    assert str(run / "eval_results.json") in result.output.replace("\n", "")
    assert "--no-resume" in lines[1]
    assert snapshot(run) == before
    again = train(load_config(config))
    assert again.stop_reason == "already_finished" and again.steps == STEPS
    assert again.final_metrics == json.loads(before["eval_results.json"])["metrics"]


def test_finished_means_every_step_of_this_config(finished, tmp_path):
    from tunelab.train.run import finished_run

    config, run = copy_run(finished, tmp_path)
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert finished_run(load_config(raw))["steps"] == STEPS
    for key, value in (("max_steps", STEPS + 2), ("lr", 1e-3)):
        changed = {**raw, "train": {**raw["train"], key: value}}
        assert finished_run(load_config(changed)) is None, key
    summary = json.loads((run / "train_summary.json").read_text(encoding="utf-8"))
    summary["steps"] = STEPS - 1  # stopped short of the last step: not finished
    (run / "train_summary.json").write_text(json.dumps(summary), encoding="utf-8")
    assert finished_run(load_config(raw)) is None


def test_base_model_evaluation_keeps_the_fine_tuned_results(finished, tmp_path, tiny_bert_dir):
    config, run = copy_run(finished, tmp_path)
    tuned = (run / "eval_results.json").read_bytes()
    tuned_predictions = (run / "predictions.jsonl").read_bytes()
    result = CliRunner().invoke(app, ["eval", str(config)])
    assert result.exit_code == 0, result.output
    assert (run / "eval_results.json").read_bytes() == tuned
    assert (run / "predictions.jsonl").read_bytes() == tuned_predictions
    assert json.loads(tuned)["model"] == {
        "kind": "fine-tuned",
        "path": str(finished[1] / "model"),  # the run that wrote it (this is a copy)
        "base_model": str(tiny_bert_dir),
        "gguf_file": None,
    }
    base = json.loads((run / "eval_base" / "eval_results.json").read_text(encoding="utf-8"))
    assert base["model"]["kind"] == "base" and base["model"]["path"] == str(tiny_bert_dir)
    rows = (run / "eval_base" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == base["num_examples"] > 0


def test_fresh_run_over_old_results_needs_no_resume_and_keeps_user_files(finished, tmp_path):
    config, run = copy_run(finished, tmp_path, max_steps=2, lr=1e-3)
    shutil.rmtree(run / "checkpoints")  # nothing to resume from: a fresh start
    (run / "notes.txt").write_text("mine", encoding="utf-8")
    (run / "adapters" / "other").mkdir(parents=True)
    (run / "adapters" / "other" / "adapter_config.json").write_text("{}", encoding="utf-8")
    (run / "eval_base").mkdir()
    (run / "eval_base" / "eval_results.json").write_text("{}", encoding="utf-8")
    before = snapshot(run)
    result = CliRunner().invoke(app, ["train", str(config)])
    assert isinstance(result.exception, TunelabError)
    message = str(result.exception)
    assert "holds an earlier run's results (model, train_summary.json" in message
    assert "--no-resume" in message and "output.dir" in message
    assert snapshot(run) == before

    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["eval"]["at_end"] = False
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(config), "--no-resume"])
    assert result.exit_code == 0, result.output
    assert "removed" in result.output and "eval_results.json" in result.output
    assert json.loads((run / "train_summary.json").read_text(encoding="utf-8"))["steps"] == 2
    assert not (run / "eval_results.json").exists() and not (run / "predictions.jsonl").exists()
    assert [r["step"] for r in metrics(run)] == [1, 2]  # the old run's lines are gone
    after = snapshot(run)
    for kept in ("notes.txt", "adapters/other/adapter_config.json", "eval_base/eval_results.json"):
        assert after[kept] == before[kept], kept
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_clear_outputs_removes_only_what_tunelab_wrote(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / ".model.old").mkdir()
    (run / "checkpoints" / "step-2").mkdir(parents=True)
    events = run / "tensorboard" / "tunelab"
    events.mkdir(parents=True)
    (events / "events.out.tfevents.1700000000.host.1.0").write_bytes(b"old run")
    mine = events / f"events.out.tfevents.1800000000.host.{os.getpid()}.0"
    mine.write_bytes(b"this run")
    (run / "README.md").write_text("# run\n\nFine-tuned with tunelab.\n", encoding="utf-8")
    (run / "data_report.json").write_text("{}", encoding="utf-8")
    (run / "my.yaml").write_text("a: 1", encoding="utf-8")
    (run / "report.html").write_text("<html></html>", encoding="utf-8")
    removed = clear_outputs(run)
    assert removed == [
        ".model.old",
        "README.md",
        "checkpoints",
        "model",
        "report.html",
        "tensorboard",
    ]
    assert sorted(p.name for p in run.iterdir()) == ["data_report.json", "my.yaml", "tensorboard"]
    assert list((run / "tensorboard").rglob("*.0")) == [mine]
    (run / "README.md").write_text("# my notes\n", encoding="utf-8")
    assert not is_tunelab_card(run / "README.md") and clear_outputs(run) == []
