"""Artifacts: save -> load reproduces outputs exactly; LoRA loads in plain PEFT; model card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from method_helpers import LABELS, batch, build, logits, perturb
from tunelab.methods.artifacts import load_artifact, save_artifact, write_model_card
from tunelab.models import load_tokenizer
from tunelab.train.previous_run import clear_outputs

CASES = [
    ("llama", "causal_lm", {"name": "full"}),
    ("bert", "classification", {"name": "full"}),
    ("gpt2", "causal_lm", {"name": "freeze", "freeze": {"top_n_layers": 1}}),
    ("bert", "classification", {"name": "freeze", "freeze": {"patterns": ["query"]}}),
    ("bert", "classification", {"name": "bitfit"}),
    ("llama", "causal_lm", {"name": "adapter", "adapter": {"kind": "houlsby"}}),
    ("gpt2", "causal_lm", {"name": "adapter"}),
    ("llama", "causal_lm", {"name": "lora"}),
    ("bert", "classification", {"name": "lora", "lora": {"use_dora": True}}),
    ("gpt2", "causal_lm", {"name": "prompt_tuning"}),
    ("bert", "classification", {"name": "prompt_tuning"}),
    ("llama", "causal_lm", {"name": "prefix_tuning", "prefix_tuning": {"reparameterize": True}}),
    ("bert", "classification", {"name": "prefix_tuning"}),
]


@pytest.mark.parametrize(("kind", "task", "method"), CASES, ids=lambda c: str(c))
def test_save_load_reproduces_outputs(request, tmp_path, kind, task, method):
    directory = request.getfixturevalue(f"tiny_{kind}_dir")
    cfg, model = build(directory, task, method, tmp_path)
    perturb(model)
    inputs = batch(task)
    expected = logits(model, inputs)
    out = save_artifact(model, cfg, tmp_path / "model", load_tokenizer(cfg.model))
    info = json.loads((out / "tunelab_method.json").read_text())
    assert info["method"] == method["name"]
    assert info["base_model"] == str(directory.resolve())
    assert info["label_names"] == (LABELS if task == "classification" else None)
    loaded, tok = load_artifact(out)
    assert torch.equal(logits(loaded, inputs), expected)
    assert "<|im_start|>" in tok.chat_template


def test_non_peft_artifacts_hold_only_trained_tensors(tiny_gpt2_dir, tmp_path):
    cfg, model = build(tiny_gpt2_dir, "causal_lm", {"name": "bitfit"}, tmp_path)
    save_artifact(model, cfg, tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["tunelab_method.json", "tunelab_rendering.json", "tunelab_weights.safetensors"]
    with safe_open(tmp_path / "model" / "tunelab_weights.safetensors", "pt") as fh:
        keys = set(fh.keys())
        assert fh.metadata() == {"format": "pt"}
    assert keys == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(k.endswith("bias") for k in keys)


PEFT_ONLY = """
import json, sys, torch, transformers
from peft import PeftModel
for job in json.load(open(sys.argv[1])):
    base = getattr(transformers, job["auto_cls"]).from_pretrained(job["base"])
    model = PeftModel.from_pretrained(base, job["adapter"]).eval()
    inputs = torch.load(job["inputs"])
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    torch.save(out, job["out"])
assert not any(m.startswith("tunelab") for m in sys.modules), "tunelab was imported"
"""


def test_lora_artifacts_load_in_plain_peft(request, tmp_path):
    jobs, expected = [], []
    for kind, task, auto_cls in [
        ("llama", "causal_lm", "AutoModelForCausalLM"),
        ("bert", "classification", "AutoModelForSequenceClassification"),
    ]:
        directory = request.getfixturevalue(f"tiny_{kind}_dir")
        cfg, model = build(directory, task, {"name": "lora", "lora": {"r": 4}}, tmp_path)
        perturb(model)
        inputs = batch(task)
        expected.append(logits(model, inputs))
        out = save_artifact(model, cfg, tmp_path / kind / "model")
        adapter_cfg = json.loads((out / "adapter_config.json").read_text())
        assert adapter_cfg["peft_type"] == "LORA"
        assert adapter_cfg["base_model_name_or_path"] == str(directory.resolve())
        with safe_open(out / "adapter_model.safetensors", "pt") as fh:
            keys = list(fh.keys())
        assert all(k.startswith("base_model.model.") and ".default." not in k for k in keys)
        torch.save(inputs, tmp_path / kind / "inputs.pt")
        jobs.append(
            {
                "auto_cls": auto_cls,
                "base": adapter_cfg["base_model_name_or_path"],
                "adapter": str(out),
                "inputs": str(tmp_path / kind / "inputs.pt"),
                "out": str(tmp_path / kind / "out.pt"),
            }
        )
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run(
        [sys.executable, "-c", PEFT_ONLY, str(tmp_path / "jobs.json")],
        check=True,
        capture_output=True,
    )
    for job, want in zip(jobs, expected, strict=True):
        assert torch.equal(torch.load(job["out"]), want)


def test_model_card(tmp_path, tiny_bert_dir):
    cfg, _ = build(tiny_bert_dir, "classification", {"name": "lora", "lora": {"r": 4}}, tmp_path)
    path = write_model_card(
        tmp_path, cfg, {"eval_accuracy": 0.8125, "confusion_matrix": [[1, 0], [0, 1]]}
    )
    text = path.read_text()
    assert path == tmp_path / "README.md"
    assert f"`{tiny_bert_dir}`" in text and "- lora" in text and "- r: `4`" in text
    assert "| eval_accuracy | 0.8125 |" in text
    assert "format: classification" in text


def test_model_card_keeps_a_readme_tunelab_did_not_write(tmp_path, tiny_bert_dir):
    cfg, _ = build(tiny_bert_dir, "classification", {"name": "lora", "lora": {"r": 4}}, tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    mine = "# my project\n\nNotes I wrote myself.\n"
    (run / "README.md").write_text(mine, encoding="utf-8")
    path = write_model_card(run, cfg, {"eval_accuracy": 0.5})
    assert (run / "README.md").read_text(encoding="utf-8") == mine
    assert path == run / "README.tunelab.md"
    assert "Fine-tuned with tunelab." in path.read_text() and "| eval_accuracy | 0.5000 |" in (
        path.read_text()
    )
    again = write_model_card(run, cfg, {"eval_accuracy": 0.75})  # the side card is replaced
    assert again == path and "| eval_accuracy | 0.7500 |" in again.read_text()
    assert (run / "README.md").read_text(encoding="utf-8") == mine
    assert clear_outputs(run) == ["README.tunelab.md"]  # tunelab's card only
    assert (run / "README.md").read_text(encoding="utf-8") == mine


def test_model_card_replaces_tunelab_own_earlier_card(tmp_path, tiny_bert_dir):
    cfg, _ = build(tiny_bert_dir, "classification", {"name": "lora", "lora": {"r": 4}}, tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    first = write_model_card(run, cfg, {"eval_accuracy": 0.5})
    second = write_model_card(run, cfg, {"eval_accuracy": 0.875})
    assert first == second == run / "README.md"
    text = second.read_text()
    assert "| eval_accuracy | 0.8750 |" in text and "| eval_accuracy | 0.5000 |" not in text
    assert not (run / "README.tunelab.md").exists()


def test_artifact_of_a_relative_model_path_loads_from_elsewhere(
    tiny_gpt2_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tiny_gpt2_dir.parent)
    cfg, model = build(Path(tiny_gpt2_dir.name), "causal_lm", {"name": "bitfit"}, tmp_path)
    perturb(model)
    expected = logits(model, batch("causal_lm"))
    save_artifact(model, cfg, tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    loaded, _ = load_artifact(tmp_path / "model")
    assert torch.equal(logits(loaded, batch("causal_lm")), expected)
