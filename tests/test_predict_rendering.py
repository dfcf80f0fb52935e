"""predict / eval / prompting render prompts as the model was trained (stored rendering),
predict cuts over-long prompts with a warning, and reads training-format rows."""

from __future__ import annotations

import json
import re

import pytest
import torch

import tunelab
from method_helpers import LABELS, perturb
from train_helpers import lm_raw
from tunelab.config import RunConfig, load_config
from tunelab.data import prepare_data
from tunelab.data.rendering import read_rendering
from tunelab.errors import TunelabError
from tunelab.evaluate import evaluate
from tunelab.evaluate.prompting import few_shot_prompt
from tunelab.inference import predict_cli, render_inputs
from tunelab.methods import apply_method
from tunelab.methods.artifacts import save_artifact
from tunelab.models import load_model, load_tokenizer
from tunelab.predict_inputs import read_input_rows
from tunelab.train import train

ROWS = [
    {"instruction": "what is your name", "input": "good morning", "output": "fine thanks"},
    {"instruction": "how are you", "input": "", "output": "good"},
    {"instruction": "the weather today", "input": "news", "output": "sport win"},
    {"instruction": "hello team", "input": "market", "output": "price vote"},
]


def _greedy(loaded, prompt: str | list[int], special: bool = False, new: int = 4) -> str:
    """Greedy generation from a prompt text (or token ids), decoded."""
    tok = loaded.tokenizer
    if isinstance(prompt, str):
        ids = tok(prompt, return_tensors="pt", add_special_tokens=special)["input_ids"]
    else:
        ids = torch.tensor([prompt])
    out = loaded.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new,
        do_sample=False,
        eos_token_id=[tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")],
        pad_token_id=tok.pad_token_id,
    )
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


@pytest.fixture(scope="module")
def default_template_run(tmp_path_factory, tiny_llama_dir):
    """A LoRA instruction run trained with data.template: default on a ChatML tokenizer."""
    root = tmp_path_factory.mktemp("default_template")
    data = root / "instr.jsonl"
    rows = [{**row, "output": f"{row['output']} {i}"} for i in range(3) for row in ROWS]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    split = {"train": 0.75, "validation": 0.0, "test": 0.25}
    extra = {"format": "instruction", "template": "default", "split": split}
    raw = lm_raw(tiny_llama_dir, data, root / "run", {"max_steps": 1}, data_extra=extra)
    raw["eval"] = {"at_end": False, "metrics": ["rouge"], "generation": {"max_new_tokens": 2}}
    cfg = load_config(raw)
    train(cfg)
    return cfg


def test_predict_renders_with_the_trained_template_not_the_chat_template(default_template_run):
    cfg = default_template_run
    stored = json.loads((cfg.run_dir / "model" / "tunelab_rendering.json").read_text())
    assert stored["template"] == "default" and stored["chat_template"] is None
    assert (stored["format"], stored["max_length"]) == ("instruction", 48)
    loaded = tunelab.load(cfg.run_dir)
    tok = loaded.tokenizer
    assert "<|im_start|>" in tok.chat_template  # the tokenizer has a chat template
    prepared = prepare_data(cfg, load_tokenizer(cfg.model))
    trained = {
        ex["messages"][0]["content"]: ex["prompt"]
        for split in prepared.examples.values()
        for ex in split
    }
    user = "what is your name\n\ngood morning"
    assert trained[user] == f"### User:\n{user}\n\n### Assistant:\n"
    row = {"instruction": "what is your name", "input": "good morning"}
    assert render_inputs(loaded, [row, user]) == [trained[user], trained[user]]
    chat = tok.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    assert render_inputs(loaded, [row])[0] != chat
    [result] = tunelab.predict(loaded, [row], max_new_tokens=4)
    assert result["input"] == row
    assert result["generated"] == _greedy(loaded, trained[user], special=True)


def test_eval_and_prompting_use_the_stored_rendering(default_template_run, tmp_path):
    cfg = default_template_run
    evaluate(cfg.run_dir, overrides=["data.template=auto"])  # the stored template wins
    lines = (cfg.run_dir / "predictions.jsonl").read_text().splitlines()
    prompts = [json.loads(line)["prompt"] for line in lines]
    assert prompts and all(p.startswith("### User:\n") for p in prompts)
    assert all(p.endswith("\n\n### Assistant:\n") for p in prompts)
    rendering = read_rendering(cfg.run_dir / "model")
    tok = load_tokenizer(cfg.model)
    shot = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    example = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}
    assert few_shot_prompt(rendering, tok, [shot], example) == (
        "### User:\nhi\n\n### Assistant:\nyo</s>\n\n### User:\nq\n\n### Assistant:\n"
    )


def _artifact(model_dir, root, task: str, data: dict, method: dict | None = None):
    """A saved (perturbed) artifact for a config with the given data section."""
    cfg = RunConfig.model_validate(
        {
            "model": {"name_or_path": str(model_dir)},
            "data": {"path": "unused.jsonl", **data},
            "method": method or {"name": "lora", "lora": {"r": 4}},
            "output": {"dir": str(root)},
        }
    )
    labels = LABELS if task == "classification" else None
    model = apply_method(load_model(cfg.model, task, labels), cfg.method, task)
    perturb(model, seed=3, scale=0.3)
    save_artifact(model, cfg, root / "model", load_tokenizer(cfg.model), labels)
    return tunelab.load(root)


def test_gpt2_prompt_over_the_position_limit_is_cut_with_a_warning(tiny_gpt2_dir, tmp_path):
    loaded = _artifact(tiny_gpt2_dir, tmp_path, "causal_lm", {"format": "chat"})
    assert loaded.rendering.max_length == 512  # above GPT-2's 256 positions
    text = "hello team " * 150
    notes: list[str] = []
    [result] = tunelab.predict(loaded, [text], max_new_tokens=4, warn=notes.append)
    ids = loaded.tokenizer(render_inputs(loaded, [text])[0], add_special_tokens=False).input_ids
    assert notes == [
        f"input 1: {len(ids) - 252} of {len(ids)} tokens cut from the right to fit 252 "
        "(data.truncation_side: right)"
    ]
    assert result["generated"] == _greedy(loaded, ids[:252])


def test_prompt_over_the_stored_max_length_is_cut_on_the_left(tiny_llama_dir, tmp_path):
    data = {"format": "chat", "max_length": 16, "truncation_side": "left"}
    loaded = _artifact(tiny_llama_dir, tmp_path, "causal_lm", data)
    text = "what is your name good morning team " * 4
    notes: list[str] = []
    [result] = tunelab.predict(loaded, [text], max_new_tokens=3, warn=notes.append)
    tok = loaded.tokenizer
    ids = tok(render_inputs(loaded, [text])[0], add_special_tokens=False)["input_ids"]
    assert notes == [
        f"input 1: {len(ids) - 16} of {len(ids)} tokens cut from the left to fit 16 "
        "(data.truncation_side: left)"
    ]
    assert result["generated"] == _greedy(loaded, ids[-16:], new=3)


def test_classification_text_over_the_limit_and_text_pairs(tiny_bert_dir, tmp_path, capsys):
    data = {"format": "classification", "columns": {"text_pair": "text_pair"}}
    loaded = _artifact(tiny_bert_dir, tmp_path, "classification", data)
    long_text = "good morning team " * 100
    inputs = tmp_path / "in.jsonl"
    rows = [{"text": long_text, "text_pair": "news"}, {"text": "a goal", "text_pair": "sport win"}]
    inputs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = predict_cli(tmp_path, str(inputs))
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and re.fullmatch(
        r"warning: input 1: \d+ of \d+ tokens cut from the right to fit 256 "
        r"\(data.truncation_side: right\)",
        warnings[0],
    )
    tok = loaded.tokenizer
    enc = tok("a goal", "sport win", return_tensors="pt")
    with torch.no_grad():
        probs = loaded.model(**enc).logits.softmax(-1)[0]
    expected = {name: round(float(p), 6) for name, p in zip(LABELS, probs, strict=True)}
    assert results[1]["input"] == rows[1]
    assert results[1]["probabilities"] == pytest.approx(expected, abs=1e-6)


def test_predict_reads_chat_and_qa_rows_as_training_renders_them(tiny_llama_dir, tmp_path):
    chat = _artifact(tiny_llama_dir, tmp_path / "chat", "causal_lm", {"format": "chat"})
    tok = chat.tokenizer
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    sharegpt = [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hello"}]
    answered = [*messages, {"role": "assistant", "content": "fine"}]
    expected = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    rows = [{"messages": messages}, {"messages": sharegpt}, {"messages": answered}]
    assert render_inputs(chat, rows) == [expected] * 3
    qa = _artifact(tiny_llama_dir, tmp_path / "qa", "causal_lm", {"format": "qa"})
    [prompt] = render_inputs(qa, [{"question": "who won", "context": "the team won"}])
    user = [{"role": "user", "content": "the team won\n\nwho won"}]
    assert prompt == tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n{"answer": 3}\n')
    with pytest.raises(
        TunelabError, match=r"bad.jsonl:2: needs one of 'question', 'context' \(the qa"
    ):
        predict_cli(tmp_path / "qa", str(bad))


def test_malformed_and_non_utf8_input_files_name_the_line(tmp_path):
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "hello"}\n{"text": "oops"\n')
    with pytest.raises(TunelabError, match=r"in.jsonl:2: malformed JSON \(") as info:
        read_input_rows(str(jsonl))
    assert "\n" not in str(info.value)
    txt = tmp_path / "in.txt"
    txt.write_bytes(b"hello\ngood\ncaf\xe9 au lait\n")
    with pytest.raises(TunelabError, match=r"in.txt:3: not valid UTF-8 \(byte 0xe9 at column 4\)"):
        read_input_rows(str(txt))
    from typer.testing import CliRunner

    from tunelab.cli import app

    result = CliRunner().invoke(app, ["predict", str(tmp_path), "--input", str(txt)])
    assert isinstance(result.exception, TunelabError)  # main() prints it as one line, exit 2
    assert str(result.exception) == (
        f"{txt}:3: not valid UTF-8 (byte 0xe9 at column 4); --input files are read as UTF-8"
    )
    (tmp_path / "list.jsonl").write_text('["a list"]\n')
    with pytest.raises(TunelabError, match=r"list.jsonl:1: expected a JSON object, got list"):
        read_input_rows(str(tmp_path / "list.jsonl"))
