"""Experiment trackers selected by ``train.report_to``: TensorBoard, W&B (offline mode) and
MLflow (local file store) receive the hyperparameters and the train/eval metrics of a run."""

from __future__ import annotations

import pytest

from train_helpers import lm_config, metrics, write_text_data
from tunelab.train import train


def test_wandb_and_mlflow_receive_the_metrics(tiny_llama_dir, tmp_path, monkeypatch):
    import mlflow
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 prefers a database
    # W&B's offline files are a binary log: record what reaches wandb (and still send it)
    sent: list[tuple[dict, int]] = []
    wandb_log = wandb.Run.log

    def record(run, data, *args, **kwargs):
        sent.append((dict(data), kwargs.get("step")))
        return wandb_log(run, data, *args, **kwargs)

    monkeypatch.setattr(wandb.Run, "log", record)
    data = write_text_data(tmp_path / "text.jsonl", n=40)
    split = {"split": {"train": 0.8, "validation": 0.2, "test": 0.0}}
    train_cfg = {"max_steps": 3, "eval_every": 3, "report_to": ["tensorboard", "wandb", "mlflow"]}
    cfg = lm_config(tiny_llama_dir, data, tmp_path / "run", train_cfg, data_extra=split)
    train(cfg)
    losses = [r["loss"] for r in metrics(cfg.run_dir)]
    eval_loss = metrics(cfg.run_dir, "eval")[0]["eval_loss"]

    wandb_losses = [(d["train/loss"], step) for d, step in sent if "train/loss" in d]
    assert wandb_losses == [(loss, step) for step, loss in enumerate(losses, 1)]
    assert [(d["eval_loss"], step) for d, step in sent if "eval_loss" in d] == [(eval_loss, 3)]
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    assert run_file.stat().st_size > 0

    client = mlflow.MlflowClient()
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [
        (step, pytest.approx(loss)) for step, loss in enumerate(losses, 1)
    ]
    assert client.get_metric_history(run.info.run_id, "eval_loss")[0].value == pytest.approx(
        eval_loss
    )
    assert run.data.params["train.max_steps"] == "3"
    assert run.data.params["method"] == "lora"
    assert list((cfg.run_dir / "tensorboard").rglob("events.out.tfevents.*"))
