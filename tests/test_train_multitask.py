"""Multi-task training on tiny models: one head per classification task (per-task metrics,
artifacts, predict/eval/export per task), exact resume, loss weights, causal LM with packing."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from multitask_helpers import MOODS, TOPICS, two_task_raw
from train_helpers import checkpoint_weights, metrics, stopped_run, write_text_data
from tunelab.cli import app
from tunelab.config import load_config
from tunelab.train import train

TRAIN = {
    "max_steps": 8,
    "gradient_accumulation_steps": 2,
    "save_every": 2,
    "keep_last": 10,
    "eval_every": 4,
    "dropout": 0.1,
}


def config(tiny_bert_dir, root, out):
    raw = two_task_raw(tiny_bert_dir, root, TRAIN, mixing="temperature", temperature=3.0)
    raw["eval"] = {"at_end": True, "split": "validation"}
    raw["output"]["dir"] = str(out)
    return load_config(raw)


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("multitask")
    result = train(config(tiny_bert_dir, root, root / "run"), resume=False)
    return root, result


def test_per_task_validation_and_their_mean(trained):
    root, result = trained
    assert result.stop_reason == "completed" and result.steps == 8
    evals = metrics(root / "run", "eval")
    assert [r["step"] for r in evals] == [4, 8]
    for row in evals:
        for metric in ("loss", "accuracy", "f1_macro"):
            per_task = [row[f"eval_topics_{metric}"], row[f"eval_moods_{metric}"]]
            assert row[f"eval_{metric}"] == pytest.approx(sum(per_task) / 2, abs=1e-12)
    best = min(evals, key=lambda r: r["eval_loss"])
    assert result.best_step == best["step"]
    results = json.loads((root / "run" / "eval_results.json").read_text())
    assert set(results["tasks"]) == {"topics", "moods"}
    assert results["tasks"]["moods"]["labels"] == sorted(MOODS)
    state = json.loads((root / "run" / "checkpoints" / "step-8" / "state.json").read_text())
    # 36 + 24 train rows in batches of 4: an epoch is 9 + 6 = 15 micro-batches; step 8 ends it
    # (its last step takes the epoch's one remaining micro-batch)
    assert (state["loop"]["epoch"], state["loop"]["batch_in_epoch"]) == (1, 0)
    assert sum(state["sampler"]["task_batches"]) == 15
    assert min(state["sampler"]["task_batches"]) > 0


def test_task_artifacts_share_the_encoder_and_load_in_plain_transformers(trained, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from tunelab.evaluate.validation import validation_metrics
    from tunelab.export import export_run
    from tunelab.inference import load, predict

    root, result = trained
    best = checkpoint_weights(root / "run", result.best_step)
    export_run(root / "run", tmp_path / "out")  # every task, to OUT/NAME
    plain = {}
    for name, labels in (("topics", TOPICS), ("moods", MOODS)):
        model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / name)
        assert [model.config.id2label[i] for i in range(len(labels))] == sorted(labels)
        weights = load_file(str(tmp_path / "out" / name / "model.safetensors"))
        assert torch.equal(weights["classifier.weight"], best[f"classifier.heads.{name}.weight"])
        plain[name] = (model.eval(), weights)
        loaded = load(root / "run", task=name)
        text = f"{labels[0]} a short line"
        got = predict(loaded, [text])[0]["probabilities"]
        inputs = loaded.tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            probs = model(**inputs).logits.softmax(-1)[0]
        for i, label in enumerate(sorted(labels)):
            assert got[label] == pytest.approx(probs[i].item(), abs=1e-5)
    encoder = [k for k in plain["topics"][1] if k.startswith("bert.")]
    assert encoder and all(
        torch.equal(plain["topics"][1][k], plain["moods"][1][k]) for k in encoder
    )
    assert all(torch.equal(plain["moods"][1][k], best[k]) for k in encoder)
    # the validation loss logged for a task at the best step, recomputed with its plain model
    from tunelab.data import prepare_data
    from tunelab.train.collate import PadCollator
    from tunelab.train.validate import validation_loader

    task_cfg = load_config(root / "run" / "tasks" / "moods" / "config.yaml")
    prepared = prepare_data(task_cfg, loaded.tokenizer)
    loader = validation_loader(prepared.splits["validation"], PadCollator(0), 8)
    again = validation_metrics(plain["moods"][0], loader, "classification")
    logged = {r["step"]: r for r in metrics(root / "run", "eval")}[result.best_step]
    assert again["loss"] == pytest.approx(logged["eval_moods_loss"], abs=1e-5)
    assert again["accuracy"] == pytest.approx(logged["eval_moods_accuracy"])


def test_cli_predict_and_eval_per_task(trained):
    root, _ = trained
    runner = CliRunner()
    out = runner.invoke(
        app, ["predict", str(root / "run"), "--input", "sad news", "--task", "moods"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout.strip().splitlines()[-1])["label"] in MOODS
    (root / "run" / "tasks" / "topics" / "eval_results.json").unlink()
    out = runner.invoke(
        app, ["eval", str(root / "run"), "--task", "topics", "--split", "validation"]
    )
    assert out.exit_code == 0, out.output
    record = json.loads((root / "run" / "tasks" / "topics" / "eval_results.json").read_text())
    assert record["metrics"]["labels"] == sorted(TOPICS) and record["split"] == "validation"


def test_resume_matches_the_uninterrupted_run(trained, tiny_bert_dir):
    root, full = trained
    resumed = stopped_run(root / "run", 4, root / "resumed")
    result = train(config(tiny_bert_dir, root, resumed), resume=None)
    assert result.steps == 8 and result.best_step == full.best_step
    ref = {r["step"]: r for r in metrics(root / "run")}
    got = metrics(resumed)
    assert [r["step"] for r in got] == list(range(1, 9))
    for record in got:
        assert record["loss"] == pytest.approx(ref[record["step"]]["loss"], abs=1e-6)
    a, b = checkpoint_weights(root / "run", 8), checkpoint_weights(resumed, 8)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    states = [
        json.loads((d / "checkpoints/step-8/state.json").read_text())
        for d in (root / "run", resumed)
    ]
    assert states[0]["sampler"] == states[1]["sampler"]


def test_loss_weight_scales_the_task_loss(tiny_bert_dir, tmp_path):
    losses = []
    for weight in (1.0, 3.0):
        raw = two_task_raw(tiny_bert_dir, tmp_path, {"max_steps": 1})
        for task in raw["data"]["tasks"]:
            task["loss_weight"] = weight
        raw["output"]["dir"] = str(tmp_path / f"w{weight}")
        train(load_config(raw), resume=False)
        losses.append(metrics(tmp_path / f"w{weight}")[0]["loss"])
    assert losses[1] == pytest.approx(3 * losses[0], rel=1e-6)


def test_causal_lm_tasks_with_packing(tiny_llama_dir, tmp_path):
    from tunelab.inference import load

    def task(name, seed):
        data = write_text_data(tmp_path / f"{name}.jsonl", n=40, seed=seed)
        split = {"train": 0.8, "validation": 0.2, "test": 0.0}
        return {"name": name, "path": str(data), "format": "text", "max_length": 48, "split": split}

    raw = {
        "model": {"name_or_path": str(tiny_llama_dir)},
        "data": {"tasks": [task("poems", 1), task("notes", 5)], "cache_dir": str(tmp_path / "c")},
        "method": {"name": "lora", "lora": {"r": 4}},
        "train": {
            "batch_size": 2,
            "max_steps": 4,
            "eval_every": 2,
            "packing": True,
            "lr": 5e-3,
            "report_to": [],
        },
        "eval": {"at_end": False},
        "output": {"dir": str(tmp_path / "run")},
    }
    result = train(load_config(raw), resume=False)
    assert result.steps == 4
    for row in metrics(tmp_path / "run", "eval"):
        assert row["eval_loss"] == pytest.approx(
            (row["eval_poems_loss"] + row["eval_notes_loss"]) / 2
        )
    rows = metrics(tmp_path / "run")
    assert all(r["loss_items"] > 48 for r in rows)  # packed rows: several examples per row
    loaded = load(tmp_path / "run", task="notes")
    assert loaded.task == "causal_lm" and loaded.rendering.format == "text"


@pytest.mark.integration
def test_multitask_example_minilm_bbc_and_chatterbot(tmp_path):
    from pathlib import Path

    from tunelab.inference import load, predict

    example = Path(__file__).resolve().parents[1] / "examples" / "multitask.yaml"
    overrides = [f"output.dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}"]
    overrides += ["train.max_steps=6", "train.eval_every=3"]
    for i in (0, 1):
        overrides += [f"data.tasks.{i}.max_samples=200", f"data.tasks.{i}.max_length=64"]
    result = train(load_config(example, overrides))
    assert result.stop_reason == "completed" and result.steps == 6
    evals = metrics(tmp_path / "run", "eval")
    assert {"eval_bbc_accuracy", "eval_chat_accuracy", "eval_accuracy"} <= set(evals[-1])
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())["tasks"]
    assert len(results["bbc"]["labels"]) == 5 and "food" in results["chat"]["labels"]
    assert "health" not in results["chat"]["labels"]  # clean.drop_labels of that task
    loaded = load(tmp_path / "run", task="chat")
    (row,) = predict(loaded, ["what is your favourite food?"])
    assert row["label"] in results["chat"]["labels"]
