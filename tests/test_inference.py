"""tunelab.load / predict / predict_cli and switching between named LoRA adapters."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import tunelab
from method_helpers import batch, build, logits, perturb
from tunelab.config import ModelConfig
from tunelab.errors import TunelabError
from tunelab.inference import predict_cli, read_inputs
from tunelab.methods.artifacts import save_artifact
from tunelab.models import load_model, load_tokenizer


def lora_run(directory, root, task, seed):
    cfg, model = build(directory, task, {"name": "lora", "lora": {"r": 4}}, root)
    perturb(model, seed=seed, scale=0.3)
    save_artifact(model, cfg, root / "model", load_tokenizer(cfg.model))
    return logits(model, batch(task))


def test_classification_predictions(tiny_bert_dir, tmp_path):
    expected = lora_run(tiny_bert_dir, tmp_path, "classification", 0)
    loaded = tunelab.load(tmp_path)
    assert loaded.task == "classification" and loaded.label_names == ["neg", "neu", "pos"]
    [result] = tunelab.predict(loaded, ["good morning team"])
    probs = result["probabilities"]
    assert set(probs) == {"neg", "neu", "pos"}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert result["label"] == max(probs, key=probs.get)
    assert torch.equal(logits(loaded.model, batch("classification")), expected)


def test_generation_is_greedy_batched_and_uses_the_chat_template(tiny_llama_dir, tmp_path):
    lora_run(tiny_llama_dir, tmp_path, "causal_lm", 0)
    loaded = tunelab.load(tmp_path / "model")
    texts = ["hello", "what is your name good morning team"]
    batched = tunelab.predict(loaded, texts, max_new_tokens=6)
    alone = [tunelab.predict(loaded, [t], max_new_tokens=6)[0] for t in texts]
    assert batched == alone  # left padding: batching does not change greedy output
    tok = loaded.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = loaded.model.generate(
        input_ids=ids, max_new_tokens=6, do_sample=False, eos_token_id=[2, 5], pad_token_id=3
    )
    assert (
        batched[0]["generated"]
        == tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
    )


def test_named_adapters_switch_and_disable(tiny_llama_dir, tmp_path):
    first = lora_run(tiny_llama_dir, tmp_path / "a", "causal_lm", 1)
    second = lora_run(tiny_llama_dir, tmp_path / "b", "causal_lm", 2)
    base = logits(
        load_model(ModelConfig(name_or_path=str(tiny_llama_dir)), "causal_lm"), batch("causal_lm")
    )
    loaded = tunelab.load(tmp_path / "a", adapters={"other": tmp_path / "b" / "model"})
    assert loaded.adapters == ["default", "other"]
    assert torch.equal(logits(loaded.model, batch("causal_lm")), first)
    loaded.set_adapter("other")
    assert torch.equal(logits(loaded.model, batch("causal_lm")), second)
    with loaded.disable_adapters():
        assert torch.allclose(logits(loaded.model, batch("causal_lm")), base, atol=1e-6)
    with pytest.raises(TunelabError, match="no adapter 'nope'"):
        loaded.set_adapter("nope")


def test_predict_cli_inputs_and_adapter(tiny_llama_dir, tmp_path, capsys):
    run = tmp_path / "run"
    lora_run(tiny_llama_dir, run, "causal_lm", 1)
    lora_run(tiny_llama_dir, tmp_path / "b", "causal_lm", 2)
    shutil.copytree(tmp_path / "b" / "model", run / "adapters" / "chatty")
    (tmp_path / "in.txt").write_text("hello\n\ngood morning\n")
    (tmp_path / "in.jsonl").write_text('{"text": "hello"}\n{"prompt": "good morning"}\n')
    assert read_inputs(str(tmp_path / "in.txt")) == ["hello", "good morning"]
    assert read_inputs(str(tmp_path / "in.jsonl")) == ["hello", "good morning"]
    assert read_inputs("just a text") == ["just a text"]
    results = predict_cli(run, str(tmp_path / "in.jsonl"), adapter="chatty")
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == results and [r["text"] for r in results] == ["hello", "good morning"]
    plain = tunelab.load(tmp_path / "b")
    assert results == tunelab.predict(plain, ["hello", "good morning"])
    with pytest.raises(TunelabError, match=r"not found in .*adapters \(have: \['chatty'\]\)"):
        predict_cli(run, "hello", adapter="missing")
    with pytest.raises(TunelabError, match="no such file"):
        read_inputs(str(tmp_path / "missing.txt"))


def test_cli_predict_and_export(tiny_bert_dir, tmp_path):
    from typer.testing import CliRunner

    from tunelab.cli import app

    lora_run(tiny_bert_dir, tmp_path, "classification", 0)
    runner = CliRunner()
    long_text = "good morning team " * 20
    result = runner.invoke(app, ["predict", str(tmp_path), "--input", long_text])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["text"] == long_text and row["label"] in ("neg", "neu", "pos")
    out = tmp_path.with_name(tmp_path.name + "-export")  # outside the run directory
    result = runner.invoke(app, ["export", str(tmp_path), str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("method", ["prefix_tuning", "prompt_tuning"])
def test_generation_uses_the_learned_prompt(tiny_llama_dir, tmp_path, method):
    cfg, model = build(tiny_llama_dir, "causal_lm", {"name": method}, tmp_path)
    perturb(model, seed=1, scale=1.0)
    save_artifact(model, cfg, tmp_path / "model", load_tokenizer(cfg.model))
    loaded = tunelab.load(tmp_path)
    tok = loaded.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        first = int(loaded.model(input_ids=ids, attention_mask=mask).logits[0, -1].argmax())
        with loaded.disable_adapters():
            base_first = int(
                loaded.model(input_ids=ids, attention_mask=mask).logits[0, -1].argmax()
            )
    if method == "prefix_tuning":  # generate() would ignore the prefix and give base_first
        assert first != base_first
    [result] = tunelab.predict(loaded, ["hello"], max_new_tokens=1)
    assert result["generated"] == tok.decode([first], skip_special_tokens=True).strip()
