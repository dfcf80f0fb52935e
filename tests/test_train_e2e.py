"""End to end: `tunelab train` on a tiny Llama (causal LM, LoRA) and a tiny BERT (classification)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
from typer.testing import CliRunner

from train_helpers import (
    checkpoint_weights,
    cls_config,
    lm_raw,
    metrics,
    write_classification_data,
    write_text_data,
)
from tunelab.cli import app
from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.train import train
from tunelab.train.dropout import set_dropout


def test_cli_causal_lm_lora(tiny_llama_dir, tmp_path):
    data = write_text_data(tmp_path / "text.jsonl", n=64)
    train_cfg = {
        "max_steps": 8,
        "eval_every": 4,
        "save_every": 4,
        "gradient_accumulation_steps": 2,
        "warmup_ratio": 0.25,
        "scheduler": "linear",
        "packing": True,
        "loss_chunk_size": 16,
        "report_to": ["tensorboard"],
    }
    raw = lm_raw(tiny_llama_dir, data, tmp_path / "run", train_cfg)
    raw["model"]["gradient_checkpointing"] = True
    raw["eval"]["at_end"] = True
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    for name in ("config.yaml", "README.md", "train_summary.json", "metrics.jsonl"):
        assert (run / name).is_file(), name
    assert (run / "model" / "adapter_model.safetensors").is_file()
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert (run / "eval_results.json").is_file()
    train_records = metrics(run)
    assert [r["step"] for r in train_records] == list(range(1, 9))
    assert all(r["grad_norm"] > 0 and r["tokens_per_s"] > 0 for r in train_records)
    assert train_records[0]["lr"] == pytest.approx(5e-3 / 2)  # warmup 2 steps
    assert train_records[-1]["loss"] < train_records[0]["loss"]
    evals = metrics(run, "eval")
    assert [r["step"] for r in evals] == [4, 8]
    assert {"eval_loss", "eval_perplexity"} <= evals[0].keys()
    summary = json.loads((run / "train_summary.json").read_text())
    for key in ("wall_time_s", "tokens_per_s", "loss_tokens", "peak_memory_mb", "best_metric"):
        assert summary[key] is not None, key
    best = min(evals, key=lambda r: r["eval_loss"])
    assert (summary["best_step"], summary["best_metric"]) == (best["step"], best["eval_loss"])
    assert summary["trainable_params"] < summary["total_params"]


def test_classification_full_best_checkpoint_is_the_artifact(tiny_bert_dir, tmp_path):
    data = write_classification_data(tmp_path / "cls.jsonl", n=120)
    train_cfg = {
        "epochs": 3,
        "eval_every": 3,
        "llrd": 0.8,
        "weight_decay": 0.01,
        "dropout": 0.2,
        "attention_dropout": 0.0,
        "early_stopping": {"metric": "eval_f1_macro", "mode": "max", "patience": 3},
    }
    cfg = cls_config(tiny_bert_dir, data, tmp_path / "run", train_cfg)
    result = train(cfg)
    evals = metrics(cfg.run_dir, "eval")
    assert {"eval_loss", "eval_accuracy", "eval_f1_macro"} <= evals[0].keys()
    best = max(evals, key=lambda r: r["eval_f1_macro"])
    assert result.best_step == best["step"]
    assert result.best_metric == pytest.approx(best["eval_f1_macro"])
    assert best["eval_accuracy"] > 0.5  # the label is the first word: learnable
    saved = load_file(str(cfg.run_dir / "model" / "model.safetensors"))
    for name, value in checkpoint_weights(cfg.run_dir, result.best_step).items():
        assert torch.equal(saved[name], value), name
    model = AutoModelForSequenceClassification.from_pretrained(cfg.run_dir / "model")
    assert model.config.id2label == {0: "film", 1: "sport", 2: "tech"}
    kept = sorted(int(p.name.split("-")[1]) for p in (cfg.run_dir / "checkpoints").iterdir())
    assert result.best_step in kept and len(kept) <= cfg.train.keep_last + 1


def test_missing_tracker_fails_at_start(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if mlflow were not installed
    data = write_classification_data(tmp_path / "data.jsonl", n=24)
    cfg = cls_config(tiny_bert_dir, data, tmp_path / "run", {"report_to": ["mlflow"]})
    with pytest.raises(TunelabError, match="pip install mlflow"):
        train(cfg)


def test_tracker_that_cannot_start_is_a_clear_error(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://tracking")
    data = write_classification_data(tmp_path / "data.jsonl", n=24)
    cfg = cls_config(tiny_bert_dir, data, tmp_path / "run", {"report_to": ["mlflow"]})
    with pytest.raises(TunelabError, match=r"a tracker failed to start .*MLFLOW_TRACKING_URI"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_dropout_override(tiny_bert_dir, tiny_llama_dir):
    bert = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    set_dropout(bert, hidden=0.3, attention=0.05)
    modules = dict(bert.named_modules())
    assert modules["bert.encoder.layer.0.attention.self.dropout"].p == 0.05
    assert modules["bert.encoder.layer.0.attention.output.dropout"].p == 0.3
    assert modules["bert.embeddings.dropout"].p == 0.3
    assert bert.config.hidden_dropout_prob == 0.3
    assert bert.config.attention_probs_dropout_prob == 0.05
    llama = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    set_dropout(llama, hidden=None, attention=0.25)
    assert llama.model.layers[1].self_attn.attention_dropout == 0.25
    assert llama.config.attention_dropout == 0.25


METHODS = {
    "llama-full": ("llama", {"name": "full"}),
    "llama-freeze": ("llama", {"name": "freeze", "freeze": {"top_n_layers": 1}}),
    "llama-adapter": ("llama", {"name": "adapter"}),
    "llama-prompt": (
        "llama",
        {"name": "prompt_tuning", "prompt_tuning": {"num_virtual_tokens": 4}},
    ),
    "llama-prefix": (
        "llama",
        {"name": "prefix_tuning", "prefix_tuning": {"num_virtual_tokens": 4}},
    ),
    "bert-bitfit": ("bert", {"name": "bitfit"}),
    "bert-lora": ("bert", {"name": "lora"}),
}


@pytest.mark.parametrize(("kind", "method"), list(METHODS.values()), ids=list(METHODS))
def test_every_method_trains_through_the_loop(kind, method, request, tmp_path):
    model_dir = request.getfixturevalue(f"tiny_{kind}_dir")
    write = write_text_data if kind == "llama" else write_classification_data
    data = write(tmp_path / "data.jsonl", n=24)
    train_cfg = {"max_steps": 2, "save_every": 1, "lr": 1e-2, "weight_decay": 0.01}
    if method["name"] in ("full", "freeze"):
        train_cfg["llrd"] = 0.9
    if method["name"] == "lora":
        train_cfg["precision"] = "bf16"  # CPU autocast path (slow without native bf16: 2 steps)
    raw = lm_raw(model_dir, data, tmp_path / "run", train_cfg)
    raw["method"] = method
    raw["data"]["split"] = {"train": 1.0, "validation": 0.0, "test": 0.0}
    if kind == "bert":
        raw["data"]["format"] = "classification"
    result = train(load_config(raw))
    assert result.steps == 2
    first, second = checkpoint_weights(tmp_path / "run", 1), checkpoint_weights(tmp_path / "run", 2)
    assert any(not torch.equal(first[k], second[k]) for k in first)
    assert any((tmp_path / "run" / "model").iterdir())
