"""Training in stages on the tiny BERT: a head-only freeze stage, then LoRA. What carries over
(the best checkpoint, the trained head, recomputed trainable sets), the run's artifact in plain
PEFT, metrics/TensorBoard/summary per stage, exact resume inside stage 2, and refusals of a
changed stage list."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

import tunelab
from train_helpers import lm_raw, max_diff, metrics, write_classification_data, write_text_data
from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.train.checkpoint import list_checkpoints

HEAD_STEPS, LORA_STEPS = 5, 6


def staged_raw(model_dir: Path, data: Path, out: Path, **train: Any) -> dict[str, Any]:
    """Stage ``head`` (freeze, no block: classifier + pooler; 60 of the rows) then stage
    ``lora`` (r=4; every row)."""
    return {
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "path": str(data),
            "format": "classification",
            "max_length": 48,
            "cache_dir": str(out.parent / "data-cache"),
            "split": {"train": 0.8, "validation": 0.1, "test": 0.1},
        },
        "method": {"name": "lora", "lora": {"r": 4, "dropout": 0.1}},
        "train": {
            "batch_size": 8,
            "lr": 2e-3,
            "report_to": [],
            "eval_every": 2,
            "save_every": 2,
            "keep_last": 10,
            "dropout": 0.1,
            **train,
        },
        "eval": {"at_end": True, "split": "test"},
        "output": {"dir": str(out)},
        "stages": [
            {
                "name": "head",
                "method": {"name": "freeze", "freeze": {"top_n_layers": 0}},
                "train": {"lr": 3e-2, "max_steps": HEAD_STEPS, "scheduler": "constant"},
                "data": {"max_samples": 60},  # a curriculum: stage 1 on a subset
            },
            {"name": "lora", "train": {"max_steps": LORA_STEPS, "warmup_steps": 2}},
        ],
    }


@pytest.fixture(scope="module")
def staged(tiny_bert_dir, tmp_path_factory):
    """One finished staged run (through the Python API), with TensorBoard on."""
    root = tmp_path_factory.mktemp("stages")
    data = write_classification_data(root / "cls.jsonl", n=120)
    raw = staged_raw(tiny_bert_dir, data, root / "run", report_to=["tensorboard"])
    result = tunelab.finetune(load_config(raw), resume=False)
    return root, data, raw, result


def classifier_params(model_dir: Path) -> int:
    """Parameters of the tiny BERT's pooler and classifier head, from its config alone."""
    config = json.loads((model_dir / "config.json").read_text())
    hidden, labels = config["hidden_size"], 3
    return hidden * hidden + hidden + hidden * labels + labels


def test_each_stage_trains_its_own_steps_and_parameters(staged, tiny_bert_dir):
    root, _, _, result = staged
    assert result.stop_reason == "completed" and result.steps == HEAD_STEPS + LORA_STEPS
    stages = result.summary["stages"]
    assert [(s["name"], s["method"], s["steps"]) for s in stages] == [
        ("head", "freeze", HEAD_STEPS),
        ("lora", "lora", LORA_STEPS),
    ]
    assert stages[0]["trainable_params"] == classifier_params(tiny_bert_dir)
    assert stages[1]["trainable_params"] > stages[0]["trainable_params"]  # recomputed
    for s in stages:
        assert s["wall_time_s"] > 0 and s["best_metric_name"] == "eval_loss"
    reports = [
        json.loads((root / "run" / "stages" / f / "data_report.json").read_text())["rows"]
        for f in ("1-head", "2-lora")
    ]
    assert reports == [  # 0.8 / 0.1 / 0.1 of 60 rows, then of all 120
        {"train": 48, "validation": 6, "test": 6},
        {"train": 96, "validation": 12, "test": 12},
    ]
    on_disk = json.loads((root / "run" / "train_summary.json").read_text())
    assert on_disk["stages"] == stages and on_disk["steps"] == HEAD_STEPS + LORA_STEPS


def test_metrics_rows_and_tensorboard_tags_name_the_stage(staged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = staged[0] / "run"
    rows = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    assert all("stage" in row for row in rows)
    train_rows = metrics(root)
    assert [(r["stage"], r["step"]) for r in train_rows] == [
        *(("head", i) for i in range(1, HEAD_STEPS + 1)),
        *(("lora", i) for i in range(1, LORA_STEPS + 1)),
    ]
    # per-stage learning rates: constant 3e-2 in stage 1; stage 2 warms up from 2e-3 / 2
    assert [r["lr"] for r in train_rows[:HEAD_STEPS]] == pytest.approx([3e-2] * HEAD_STEPS)
    assert train_rows[HEAD_STEPS]["lr"] == pytest.approx(1e-3)
    for name in ("head", "lora"):
        folder = next((root / "stages").glob(f"*-{name}")) / "tensorboard"
        events = EventAccumulator(str(next(folder.rglob("events.out.tfevents.*")).parent))
        events.Reload()
        assert {f"{name}/train/loss", f"{name}/eval_loss"} <= set(events.Tags()["scalars"])


def test_report_draws_every_stage_one_after_another(staged):
    root = staged[0] / "run"
    html = (root / "report.html").read_text(encoding="utf-8")
    assert "location.reload()" not in html  # the finished run's page does not reload
    found = re.findall(r'<script type="application/json" id="chart-\d+-fig">(.*?)</script>', html)
    loss = next(f for f in map(json.loads, found) if f["layout"]["title"]["text"] == "loss")
    assert loss["data"][0]["x"] == list(range(1, HEAD_STEPS + LORA_STEPS + 1))
    assert [s["x0"] for s in loss["layout"]["shapes"]] == [HEAD_STEPS + 1]
    notes = [a["text"] for a in loss["layout"]["annotations"]]
    assert notes == ["stage: head", "stage: lora"]


def test_stage_two_starts_from_stage_one_best_checkpoint(staged, tiny_bert_dir):
    root = staged[0] / "run"
    head_dir = root / "stages" / "1-head"
    best = json.loads((head_dir / "train_summary.json").read_text())["best_step"]
    trained = load_file(str(head_dir / "checkpoints" / f"step-{best}" / "trainable.safetensors"))
    handoff = load_file(str(root / "handoff" / "1-head" / "model.safetensors"))
    base = load_file(str(tiny_bert_dir / "model.safetensors"))
    for name, value in trained.items():  # the trained head and pooler are handed on
        assert torch.equal(handoff[name], value), name
    kept = [name for name in base if name in handoff and name not in trained]
    assert len(kept) > 10  # the encoder's weights, by the same names
    for name in kept:  # every other weight is the base model's
        assert torch.equal(handoff[name], base[name]), name
    last = load_file(str(head_dir / "checkpoints" / f"step-{HEAD_STEPS}" / "trainable.safetensors"))
    if best != HEAD_STEPS:  # the best, not the last, was handed on
        assert max_diff(last, trained) > 0


def test_final_artifact_loads_in_plain_peft_and_works_with_predict_eval_export(staged, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root, _, _, result = staged
    run = root / "run"
    assert (run / "eval_results.json").is_file() and result.final_metrics
    assert "## Stages" in (run / "README.md").read_text()
    adapter = json.loads((run / "model" / "adapter_config.json").read_text())
    base = AutoModelForSequenceClassification.from_pretrained(adapter["base_model_name_or_path"])
    plain = PeftModel.from_pretrained(base, run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    batch = tokenizer(["sport a b c", "film d e"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = plain(**batch).logits.softmax(-1)
    loaded = tunelab.load(run)
    with torch.no_grad():
        assert torch.allclose(loaded.model(**batch).logits.softmax(-1), expected, atol=1e-5)
    predicted = tunelab.predict(loaded, ["sport a b c", "film d e"])
    labels = loaded.label_names
    assert [p["label"] for p in predicted] == [labels[i] for i in expected.argmax(-1).tolist()]
    again = tunelab.evaluate_run(run)
    assert again["accuracy"] == pytest.approx(result.final_metrics["accuracy"])
    exported = tunelab.export_run(run, tmp_path / "export")
    merged = AutoModelForSequenceClassification.from_pretrained(exported).eval()
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits.softmax(-1), expected, atol=1e-5)


def test_a_finished_staged_run_is_not_trained_again(staged):
    _, _, raw, result = staged
    again = tunelab.finetune(load_config(raw))
    assert again.stop_reason == "already_finished" and again.steps == result.steps


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s[1]["train"].update(lr=1e-3), r"stages\[1\] \('lora'\) differs .*train\.lr"),
        (lambda s: s[1].update(name="lora2"), r"stages\[1\] is 'lora2', but .* stage 'lora'"),
        (lambda s: s[0]["train"].update(max_steps=9), r"stages\[0\] \('head'\) .*max_steps"),
        (lambda s: s.pop(), r"stages\[1\] is no stage, but .* stage 'lora'"),
    ],
)
def test_a_changed_stage_list_is_refused_naming_the_stage(staged, change, message):
    _, _, raw, _ = staged
    changed = json.loads(json.dumps(raw))
    change(changed["stages"])
    with pytest.raises(TunelabError, match=message):
        tunelab.finetune(load_config(changed))


def test_resume_in_stage_two_matches_the_uninterrupted_run(staged):
    root, _, raw, _ = staged
    raw = {**raw, "train": {**raw["train"], "report_to": []}}
    raw["output"] = {"dir": str(root / "resumed")}
    full = tunelab.finetune(load_config(raw), resume=False)
    run, lora_dir = root / "resumed", root / "resumed" / "stages" / "2-lora"
    reference = metrics(run)
    final = load_file(
        str(lora_dir / "checkpoints" / f"step-{LORA_STEPS}" / "trainable.safetensors")
    )
    # the state a run killed right after stage 2's step-2 checkpoint leaves behind
    for step, path in list_checkpoints(lora_dir):
        if step > 2:
            shutil.rmtree(path)
    for name in ("model", "train_summary.json", "eval_results.json", "predictions.jsonl"):
        for where in (run, lora_dir):
            target = where / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    printed = io.StringIO()
    resumed = tunelab.finetune(load_config(raw), console=Console(file=printed, width=300))
    assert resumed.steps == full.steps
    assert "stage 1/2 head: already trained" in printed.getvalue()
    assert (
        f"resuming from {lora_dir / 'checkpoints' / 'step-2'} (step 2 of 6)" in printed.getvalue()
    )
    got = metrics(run)
    assert [(r["stage"], r["step"]) for r in got] == [(r["stage"], r["step"]) for r in reference]
    for mine, ref in zip(got, reference, strict=True):
        assert mine["loss"] == pytest.approx(ref["loss"], abs=1e-6)
        assert mine["lr"] == pytest.approx(ref["lr"], rel=1e-12)
    again = load_file(
        str(lora_dir / "checkpoints" / f"step-{LORA_STEPS}" / "trainable.safetensors")
    )
    assert max_diff(final, again) < 1e-6
    assert resumed.final_metrics["accuracy"] == pytest.approx(full.final_metrics["accuracy"])


def test_lora_then_full_on_a_causal_lm_merges_lora_before_the_full_stage(tiny_llama_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = write_text_data(tmp_path / "text.jsonl", n=40)
    raw = lm_raw(tiny_llama_dir, data, tmp_path / "run", {"max_steps": 3})
    raw["stages"] = [{"name": "lora"}, {"name": "full", "method": {"name": "full"}}]
    result = tunelab.finetune(load_config(raw))
    assert [(s["method"], s["steps"]) for s in result.summary["stages"]] == [
        ("lora", 3),
        ("full", 3),
    ]
    run = tmp_path / "run"
    # the hand-off is stage 1's adapter merged into the base weights
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    merged = PeftModel.from_pretrained(base, run / "stages" / "1-lora" / "model").merge_and_unload()
    handoff = AutoModelForCausalLM.from_pretrained(run / "handoff" / "1-lora")
    assert max_diff(merged.state_dict(), handoff.state_dict()) < 1e-6
    # the run's artifact is the full stage's whole model, trained on from the hand-off
    final = AutoModelForCausalLM.from_pretrained(run / "model")
    assert max_diff(final.state_dict(), handoff.state_dict()) > 1e-4
    [row] = tunelab.predict(tunelab.load(run), ["hello"], max_new_tokens=3)
    assert isinstance(row["generated"], str)
