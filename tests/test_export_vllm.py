"""``tunelab export --for vllm``: a LoRA adapter vLLM loads, or a one-line error saying what to change."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer
from typer.testing import CliRunner

import tunelab
from serve_helpers import make_run
from tunelab.cli import app
from tunelab.data.templates import default_render
from tunelab.errors import TunelabError
from tunelab.export_vllm import DEFAULT_TEMPLATE_JINJA, export_for
from tunelab.testing import save_tiny_model

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "hi there"},
    {"role": "user", "content": "good morning"},
]


def test_lora_run_exports_an_adapter_with_its_chat_template(tmp_path, tiny_llama_dir):
    run = make_run(tiny_llama_dir, tmp_path / "run", "causal_lm", {"name": "lora"}, 1)
    result = CliRunner().invoke(
        app, ["export", str(run), str(tmp_path / "out"), "--for", "vllm"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 0, result.output
    assert "--enable-lora --lora-modules out=" in result.output
    out = tmp_path / "out"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and not config["use_dora"]
    assert not config.get("modules_to_save")
    assert (out / "adapter_model.safetensors").is_file()
    tok = AutoTokenizer.from_pretrained(out)
    stored = (out / "chat_template.jinja").read_text()
    trained = AutoTokenizer.from_pretrained(run / "model")
    assert tok.apply_chat_template(MESSAGES, chat_template=stored, tokenize=False) == (
        trained.apply_chat_template(MESSAGES, tokenize=False)
    )
    served = tunelab.predict(tunelab.load(out), ["hello", "good morning"], max_new_tokens=12)
    assert served == tunelab.predict(tunelab.load(run), ["hello", "good morning"], 12)


def test_default_template_is_written_as_jinja(tmp_path, plain_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(plain_tokenizer_dir)
    base = save_tiny_model("llama", tmp_path / "base", tok)
    run = make_run(base, tmp_path / "run", "causal_lm", {"name": "lora"}, 1)
    export_for("sglang", run, tmp_path / "out")
    stored = (tmp_path / "out" / "chat_template.jinja").read_text()
    assert stored == DEFAULT_TEMPLATE_JINJA
    for prompt in (True, False):
        rendered = tok.apply_chat_template(
            MESSAGES, chat_template=stored, tokenize=False, add_generation_prompt=prompt
        )
        assert rendered == default_render(MESSAGES, tok.eos_token, prompt)


@pytest.mark.parametrize(
    ("kind", "task", "method", "says"),
    [
        ("llama", "causal_lm", {"name": "lora", "lora": {"use_dora": True}}, "use_dora: false"),
        ("bert", "classification", {"name": "lora"}, "modules_to_save (classifier"),
        ("llama", "causal_lm", {"name": "prompt_tuning"}, "retrain with method.name: lora"),
        ("gpt2", "causal_lm", {"name": "adapter"}, "serve it with tunelab serve"),
    ],
)
def test_what_vllm_refuses_is_named_with_the_fix(request, tmp_path, kind, task, method, says):
    model_dir = request.getfixturevalue(f"tiny_{kind}_dir")
    run = make_run(model_dir, tmp_path / "run", task, method, 1)
    with pytest.raises(TunelabError, match=r"not servable|vLLM and SGLang load") as info:
        export_for("vllm", run, tmp_path / "out")
    assert says in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_plain_model_export_is_what_vllm_serves(tmp_path, tiny_gpt2_dir):
    run = make_run(tiny_gpt2_dir, tmp_path / "run", "causal_lm", {"name": "bitfit"}, 1)
    export_for("vllm", run, tmp_path / "out")
    assert (tmp_path / "out" / "config.json").is_file()
    assert (tmp_path / "out" / "model.safetensors").is_file()
