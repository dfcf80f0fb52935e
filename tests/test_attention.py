"""tunelab attention: maps read from the real model (eager attention), rollout, the page."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from train_helpers import cls_config, lm_config, write_classification_data, write_text_data
from tunelab.attention import read_attention_maps, write_attention_page
from tunelab.attention.page import SCALE, unpacked
from tunelab.attention.rollout import rollout
from tunelab.cli import app, main
from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.train import train

TEXT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_llama_dir) -> Path:
    """A LoRA causal-LM run on the tiny Llama, trained hard enough to move its attention."""
    root = tmp_path_factory.mktemp("attn_lora")
    data = write_text_data(root / "text.jsonl", n=48)
    cfg = lm_config(tiny_llama_dir, data, root / "run", {"max_steps": 6, "lr": 2e-2})
    train(cfg)
    return cfg.run_dir


@pytest.fixture(scope="module")
def prefix_run(tmp_path_factory, tiny_bert_dir) -> Path:
    """Prefix tuning (tunelab's encoder prefixes) of the tiny BERT for classification."""
    root = tmp_path_factory.mktemp("attn_prefix")
    data = write_classification_data(root / "cls.jsonl", n=48)
    raw = cls_config(tiny_bert_dir, data, root / "run", {"max_steps": 2}).model_dump(mode="json")
    raw["method"] = {"name": "prefix_tuning", "prefix_tuning": {"num_virtual_tokens": 5}}
    cfg = load_config(raw)
    train(cfg)
    return cfg.run_dir


def independent_attention(model, ids: list[int]) -> np.ndarray:
    """``[layers, heads, q, k]`` straight from Transformers' output, for comparison."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    return torch.stack([a[0] for a in out.attentions]).numpy()


def test_rollout_matches_a_hand_computed_example_and_an_explicit_loop():
    # two layers, one head, every token attends to the first: (A + I) / 2 = [[1, 0], [.5, .5]]
    # per layer, and [[1, 0], [.5, .5]] @ [[1, 0], [.5, .5]] = [[1, 0], [.75, .25]]
    first = np.array([[[[1.0, 0.0], [1.0, 0.0]]]] * 2)
    assert np.allclose(rollout(first), [[1.0, 0.0], [0.75, 0.25]])
    rng = np.random.default_rng(0)
    maps = rng.random((3, 2, 4, 4))
    maps /= maps.sum(-1, keepdims=True)
    expected = np.eye(4)
    for layer in range(3):
        mean = np.zeros((4, 4))
        for head in range(2):
            mean += maps[layer, head] / 2
        with_residual = mean + np.eye(4)
        for row in range(4):
            with_residual[row] /= with_residual[row].sum()
        expected = with_residual @ expected
    assert np.allclose(rollout(maps), expected)
    assert np.allclose(rollout(maps).sum(-1), 1.0)


def test_causal_lora_maps_are_the_models_rows_sum_to_1_lower_triangular_differ_from_base(
    lora_run, tiny_llama_dir
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = read_attention_maps(lora_run, TEXT, max_new_tokens=3)
    tuned, base = result.maps
    assert result.generated == 3 and tuned.weights.shape[-1] == result.prompt_tokens + 3
    assert tuned.label.startswith("fine-tuned (lora)") and base.label.startswith("base")
    for maps in result.maps:
        assert np.allclose(maps.weights.sum(-1), 1.0, atol=1e-5)
        assert np.all(np.triu(maps.weights, k=1) == 0)  # no token attends to a later one
    ids = result.maps[0].weights.shape[-1]
    # the same numbers as Transformers' own eager models (base, and base + the saved LoRA)
    tok_ids = _ids(lora_run, TEXT, result)
    assert len(tok_ids) == ids
    plain = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="eager")
    assert np.allclose(base.weights, independent_attention(plain.eval(), tok_ids), atol=1e-6)
    with_lora = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="eager"),
        str(lora_run / "model"),
    ).eval()
    assert np.allclose(tuned.weights, independent_attention(with_lora, tok_ids), atol=1e-6)
    assert np.abs(tuned.weights - base.weights).max() > 1e-3  # LoRA changed what it attends to
    assert np.allclose(tuned.rollout()[0].sum(-1), 1.0)


def _ids(run_dir: Path, text: str, result) -> list[int]:
    """The prompt's ids (tokenised here) followed by the generated ones (greedy, recomputed
    with the LoRA model by plain forward passes)."""
    from tunelab.inference import load

    loaded = load(run_dir)
    ids = loaded.tokenizer(text)["input_ids"]
    assert len(ids) == result.prompt_tokens
    with torch.no_grad():
        for _ in range(result.generated):
            logits = loaded.model(input_ids=torch.tensor([ids])).logits
            ids.append(int(logits[0, -1].argmax()))
    return ids


def test_encoder_prefix_maps_cover_the_virtual_keys_and_attend_both_ways(prefix_run):
    result = read_attention_maps(prefix_run, "sport " + TEXT)
    tuned, base = result.maps
    n = result.prompt_tokens
    assert result.generated == 0
    assert tuned.weights.shape[-2:] == (n, n + 5) and base.weights.shape[-2:] == (n, n)
    assert tuned.tokens[:5] == [f"<v{i}>" for i in range(5)] and all(tuned.special[:5])
    assert np.allclose(tuned.weights.sum(-1), 1.0, atol=1e-5)
    assert tuned.weights[..., :5].sum() > 0  # the prefix is attended to
    assert np.triu(base.weights, k=1).max() > 0.01  # an encoder looks ahead too
    roll, offset = tuned.rollout()
    assert offset == 5 and roll.shape == (n, n) and np.allclose(roll.sum(-1), 1.0)


def test_the_run_report_shows_the_maps_of_validation_examples(prefix_run):
    stored = json.loads((prefix_run / "attention.json").read_text(encoding="utf-8"))["examples"]
    assert len(stored) == 2  # output.attention_examples' default
    report = (prefix_run / "report.html").read_text(encoding="utf-8")
    section = report[report.index('<section data-section="attention"') :]
    assert section.count("tunelabAttention({") == 2 and 'id="attn-' in section
    for block in stored:  # the same maps as reading the example's text afresh
        again = read_attention_maps(prefix_run, block["text"])
        for model, maps in zip(block["models"], again.maps, strict=True):
            assert np.allclose(unpacked(model["maps"]), maps.weights, atol=1 / SCALE)
            assert model["tokens"] == maps.tokens


def test_page_is_self_contained_and_holds_the_maps(lora_run, tmp_path):
    result = read_attention_maps(lora_run, TEXT, max_new_tokens=2)
    path = write_attention_page([result], tmp_path / "a.html", layer=-1)
    html = path.read_text(encoding="utf-8")
    assert (
        "<script src" not in html and "Plotly.react" in html and len(html) > 1_000_000
    )  # plotly.js is inlined
    payload = json.loads(re.search(r"tunelabAttention\((\{.*?\})\);</script>", html).group(1))
    assert payload["layers"] == [len(result.maps[0].weights) - 1]
    shown = unpacked(payload["models"][0]["maps"])
    assert np.allclose(shown, result.maps[0].weights[-1:], atol=1 / SCALE)
    assert payload["models"][0]["tokens"] == result.maps[0].tokens
    assert '<option value="generated">' in html


def test_bad_requests_are_one_line_errors(lora_run, tmp_path, tiny_llama_dir):
    result = read_attention_maps(lora_run, TEXT, max_new_tokens=0, base=False)
    with pytest.raises(TunelabError, match=r"^--layer 9: the model has 2 layers \(0-1"):
        write_attention_page([result], tmp_path / "a.html", layer=9)
    with pytest.raises(TunelabError, match="--text is empty"):
        read_attention_maps(lora_run, "  ")
    with pytest.raises(TunelabError, match="no such run directory or config file"):
        read_attention_maps(tmp_path / "nope", TEXT)


def test_a_model_without_attention_weights_is_a_one_line_error(
    tmp_path, tokenizer_dir, monkeypatch, capsys
):
    from transformers import AutoTokenizer, MambaConfig, MambaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model_dir = tmp_path / "mamba"
    config = MambaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, state_size=4)
    MambaForCausalLM(config).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    cfg = tmp_path / "mamba.yaml"
    cfg.write_text(
        f"model: {{name_or_path: {model_dir}}}\ndata: {{path: x.jsonl, format: text}}\n"
        f"output: {{dir: {tmp_path / 'run'}}}\n"
    )
    monkeypatch.setattr(sys, "argv", ["tunelab", "attention", str(cfg), "--text", TEXT])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "attention weights of this model cannot be read" in lines[0]
    assert f"error: {cfg}: " in lines[0] and "Traceback" not in err


def test_cli_writes_the_page_of_a_config_base_model(tiny_bert_dir, tmp_path):
    cfg = tmp_path / "bert.yaml"
    cfg.write_text(
        f"model: {{name_or_path: {tiny_bert_dir}}}\n"
        "data: {path: x.jsonl, format: classification}\n"
        f"output: {{dir: {tmp_path / 'run'}}}\n"
    )
    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["attention", str(cfg), "--text", TEXT, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "attention of base (" in result.output and "2 layers x 4 heads" in result.output
    assert out.is_file() and "tunelabAttention(" in out.read_text(encoding="utf-8")


HEATMAPS = """
return Array.from(document.querySelectorAll('.tl-attn .js-plotly-plot')).map(function(div){
  var z = div.data[0].z;
  return {id: div.id, title: div.layout.title.text, rows: z.length, cols: z[0].length,
          cells: div.querySelectorAll('.heatmaplayer .hm').length};
});
"""


def test_the_page_in_a_browser_draws_every_map_and_follows_the_menus(lora_run, tmp_path):
    from browser import find_browser, load, open_chromium, screenshot

    try:
        find_browser()
    except RuntimeError as exc:
        pytest.fail(str(exc))  # a missing browser is a failure, never a skip
    result = read_attention_maps(lora_run, TEXT, max_new_tokens=3)
    page = write_attention_page([result], tmp_path / "attention.html")
    n = result.prompt_tokens + result.generated
    driver = open_chromium()
    try:
        assert load(driver, page) == []  # no console errors
        maps = driver.execute_script(HEATMAPS)
        assert [m["id"].split("-", 1)[1] for m in maps] == [
            "map-0", "map-1", "diff", "roll-0", "roll-1"
        ]  # fmt: skip
        assert all((m["rows"], m["cols"], m["cells"]) == (n, n, 1) for m in maps)
        assert maps[0]["title"].startswith("fine-tuned (lora): layer 0, mean of heads")
        driver.execute_script(
            "for (const [s, v] of [['layer', '1'], ['head', '2'], ['view', 'generated']]) {"
            " const el = document.getElementById('attn0-' + s); el.value = v;"
            " el.dispatchEvent(new Event('change')); }"
        )
        maps = driver.execute_script(HEATMAPS)
        assert maps[0]["title"].endswith("layer 1, head 2")
        shown = driver.execute_script(
            "return document.getElementById('attn0-map-0').data[0].z"
        )  # the generated tokens' rows over the prompt's columns, layer 1 head 2
        expected = result.maps[0].weights[1, 2, result.prompt_tokens :, : result.prompt_tokens]
        assert np.allclose(shown, expected, atol=1 / SCALE)
        screenshot(driver, tmp_path / "attention.png")
    finally:
        driver.quit()


def test_prompt_tuning_maps_hold_the_virtual_tokens_on_both_axes(tiny_llama_dir):
    from method_helpers import build
    from tunelab.attention.source import EAGER, Source
    from tunelab.data.rendering import Rendering
    from tunelab.models import load_tokenizer

    method = {"name": "prompt_tuning", "prompt_tuning": {"num_virtual_tokens": 4}}
    cfg, model = build(tiny_llama_dir, "causal_lm", method)
    model.get_base_model().set_attn_implementation(EAGER)
    tok = load_tokenizer(cfg.model)
    source = Source("tiny", "causal_lm", "prompt_tuning", tok,
                    Rendering.from_config(cfg.data, tok), [("prompt", model.eval())])  # fmt: skip
    (maps,) = read_attention_maps(source, TEXT, max_new_tokens=2).maps
    size = maps.weights.shape[-1]
    assert maps.weights.shape[-2] == size and maps.virtual_keys == maps.virtual_queries == 4
    assert maps.tokens[:4] == ["<v0>", "<v1>", "<v2>", "<v3>"]
    assert np.allclose(maps.weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(maps.weights, k=1) == 0)  # virtual tokens come first, causally
    roll, offset = maps.rollout()
    assert offset == 0 and roll.shape == (size, size)
