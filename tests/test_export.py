"""Export: standalone models load in plain Transformers and match the unmerged model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from rich.console import Console

from method_helpers import batch, build, logits, perturb
from tunelab.errors import TunelabError
from tunelab.export import export_run
from tunelab.methods.artifacts import save_artifact
from tunelab.models import load_tokenizer

PLAIN_LOAD = """
import json, sys, torch, transformers
for job in json.load(open(sys.argv[1])):
    cls = getattr(transformers, job["auto_cls"])
    model = cls.from_pretrained(job["dir"], trust_remote_code=job["remote"]).eval()
    inputs = torch.load(job["inputs"])
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    torch.save(out, job["out"])
assert not any(m.startswith("tunelab") for m in sys.modules), "tunelab was imported"
"""

CASES = [
    ("llama", "causal_lm", {"name": "full"}),
    ("gpt2", "causal_lm", {"name": "freeze", "freeze": {"top_n_layers": 1}}),
    ("bert", "classification", {"name": "bitfit"}),
    ("gpt2", "causal_lm", {"name": "bitfit"}),
    ("llama", "causal_lm", {"name": "lora"}),
    ("bert", "classification", {"name": "lora", "lora": {"use_dora": True}}),
    ("gpt2", "causal_lm", {"name": "lora", "lora": {"use_rslora": True}}),
    (
        "llama",
        "causal_lm",
        {"name": "adapter", "adapter": {"kind": "houlsby", "activation": "gelu"}},
    ),
    ("bert", "classification", {"name": "adapter"}),
    ("bert", "classification", {"name": "prefix_tuning"}),
]
REMOTE = ("adapter", "prefix_tuning")  # exported with generated code


def trained_run(request, root, kind, task, method):
    """A run directory with a trained-looking artifact, plus the unmerged model's outputs."""
    directory = request.getfixturevalue(f"tiny_{kind}_dir")
    cfg, model = build(directory, task, method, root / "run")
    perturb(model)
    inputs = batch(task)
    expected = logits(model, inputs)
    save_artifact(model, cfg, root / "run" / "model", load_tokenizer(cfg.model))
    return inputs, expected


@pytest.fixture(scope="module")
def exported(request, tmp_path_factory):
    """Export every case, then load all exports in ONE process that never imports tunelab."""
    results, jobs = [], []
    for i, (kind, task, method) in enumerate(CASES):
        root = tmp_path_factory.mktemp(f"export{i}")
        inputs, expected = trained_run(request, root, kind, task, method)
        console = Console(record=True, width=300)
        out = export_run(root / "run", root / "export", console=console)
        torch.save(inputs, root / "inputs.pt")
        auto_cls = (
            "AutoModelForCausalLM" if task == "causal_lm" else "AutoModelForSequenceClassification"
        )
        jobs.append(
            {
                "auto_cls": auto_cls,
                "dir": str(out),
                "remote": method["name"] in REMOTE,
                "inputs": str(root / "inputs.pt"),
                "out": str(root / "out.pt"),
            }
        )
        results.append((out, expected, console.export_text(), root / "out.pt"))
    manifest = tmp_path_factory.mktemp("manifest") / "jobs.json"
    manifest.write_text(json.dumps(jobs))
    subprocess.run(
        [sys.executable, "-c", PLAIN_LOAD, str(manifest)], check=True, capture_output=True
    )
    return results


@pytest.mark.parametrize("case", range(len(CASES)), ids=[str(c) for c in CASES])
def test_export_matches_unmerged_model(exported, case):
    out, expected, message, merged_path = exported[case]
    merged = torch.load(merged_path)
    assert (merged - expected).abs().max().item() < 1e-4
    assert (out / "tokenizer_config.json").is_file()
    if CASES[case][2]["name"] == "adapter":
        assert (out / "modeling_tunelab_adapter.py").is_file()
        assert "cannot be folded" in message
    elif CASES[case][2]["name"] == "prefix_tuning":
        assert (out / "modeling_tunelab_prefix.py").is_file()
        assert "prefix tuning cannot be merged" in message
        assert json.loads((out / "config.json").read_text())["model_type"] == "tunelab_prefix"
    else:
        assert "exported a standalone merged" in message
        assert not list(out.glob("*.py"))


def test_prompt_tuning_exports_the_peft_adapter(request, tmp_path):
    trained_run(request, tmp_path, "llama", "causal_lm", {"name": "prompt_tuning"})
    console = Console(record=True, width=300)
    out = export_run(tmp_path / "run", tmp_path / "export", console=console)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert "prompt_tuning cannot be merged" in console.export_text()


def test_export_needs_a_trained_run(tmp_path):
    with pytest.raises(TunelabError, match="no trained model"):
        export_run(tmp_path, tmp_path / "out")
    with pytest.raises(TunelabError, match="no such run directory"):
        export_run(tmp_path / "missing", tmp_path / "out")


def test_exported_prefix_model_refuses_to_load_without_its_code(exported):
    from transformers import AutoModelForSequenceClassification

    out = exported[[c[2]["name"] for c in CASES].index("prefix_tuning")][0]
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForSequenceClassification.from_pretrained(out)
