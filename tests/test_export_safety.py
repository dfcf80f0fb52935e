"""Export never writes into the run nor over files it did not write; adapter exports need
trust_remote_code and then load exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from method_helpers import batch, build, logits, perturb
from tunelab.cli import app
from tunelab.errors import TunelabError
from tunelab.export import export_run
from tunelab.export_target import MARKER
from tunelab.methods.artifacts import save_artifact
from tunelab.models import load_tokenizer


def make_run(model_dir: Path, run: Path, method: dict, task: str = "classification"):
    """A run directory (config.yaml, model/, a checkpoint file); the unmerged model's logits."""
    cfg, model = build(model_dir, task, method, run)
    perturb(model)
    inputs = batch(task)
    expected = logits(model, inputs)
    save_artifact(model, cfg, run / "model", load_tokenizer(cfg.model))
    (run / "config.yaml").write_text("model: {}\n", encoding="utf-8")
    (run / "checkpoints" / "step-2").mkdir(parents=True)
    (run / "checkpoints" / "step-2" / "state.json").write_text("{}", encoding="utf-8")
    return inputs, expected


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def export_cli(*args: str):
    return CliRunner().invoke(app, ["export", *map(str, args)])


@pytest.fixture
def run(tiny_bert_dir, tmp_path) -> Path:
    make_run(tiny_bert_dir, tmp_path / "run", {"name": "bitfit"})
    return tmp_path / "run"


def test_export_refuses_the_run_itself_or_a_folder_inside_or_around_it(run):
    before = snapshot(run)
    cases = {
        run: "is the run",
        run / "model": "is the run",
        run / "new": "is the run",
        run.parent: "contains the run",
    }
    for out, message in cases.items():
        result = export_cli(run, out)
        assert isinstance(result.exception, TunelabError), (out, result.output)
        assert message in str(result.exception)
    # the artifact folder given as the run: its run directory is protected as well
    result = export_cli(run / "model", run)
    assert "is the run" in str(result.exception)
    assert snapshot(run) == before
    assert not (run / "new").exists()


def test_export_refuses_a_folder_holding_user_files(run, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    result = export_cli(run, out)
    assert "is not empty" in str(result.exception) and "--overwrite" in str(result.exception)
    result = export_cli(run, out, "--overwrite")
    assert "is not an earlier tunelab export" in str(result.exception)
    assert snapshot(out) == {"notes.txt": b"keep me"}


def test_overwrite_replaces_only_an_earlier_export(run, tmp_path):
    out = tmp_path / "export"
    assert export_cli(run, out).exit_code == 0
    marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    assert marker["method"] == "bitfit" and "config.json" in marker["files"]
    assert sorted(marker["files"]) == sorted(p.name for p in out.iterdir())
    first = snapshot(out)
    assert "is not empty" in str(export_cli(run, out).exception)
    result = export_cli(run, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert snapshot(out).keys() == first.keys()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(TunelabError, match=r"did not export \(notes\.txt\)"):
        export_run(run, out, overwrite=True)
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    with pytest.raises(TunelabError, match="is a file"):
        export_run(run, tmp_path / "a-file")


LOAD_BOTH_WAYS = """
import json, sys, torch, transformers
job = json.load(open(sys.argv[1]))
try:
    transformers.AutoModelForCausalLM.from_pretrained(job["dir"])
    plain = "loaded"
except Exception as exc:
    plain = f"{type(exc).__name__}: {exc}"
model = transformers.AutoModelForCausalLM.from_pretrained(job["dir"], trust_remote_code=True)
inputs = torch.load(job["inputs"])
with torch.no_grad():
    out = model.eval()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
torch.save(out.logits, job["out"])
json.dump({"plain": plain, "config": type(model.config).__name__}, open(job["report"], "w"))
"""


def test_adapter_export_has_its_own_model_type(tiny_llama_dir, tmp_path):
    method = {"name": "adapter", "adapter": {"kind": "houlsby", "activation": "gelu"}}
    inputs, expected = make_run(tiny_llama_dir, tmp_path / "run", method, "causal_lm")
    out = export_run(tmp_path / "run", tmp_path / "export")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "tunelab_adapter_llama"
    assert config["auto_map"]["AutoConfig"] == "modeling_tunelab_adapter.TunelabAdapterConfig"
    torch.save(inputs, tmp_path / "inputs.pt")
    job = {
        "dir": str(out),
        "inputs": str(tmp_path / "inputs.pt"),
        "out": str(tmp_path / "out.pt"),
        "report": str(tmp_path / "report.json"),
    }
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", LOAD_BOTH_WAYS, str(tmp_path / "job.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["plain"] != "loaded" and "trust_remote_code" in report["plain"]
    assert report["config"] == "TunelabAdapterConfig"
    got = torch.load(tmp_path / "out.pt")
    assert (got - expected).abs().max().item() < 1e-5
