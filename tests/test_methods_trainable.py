"""Each method trains exactly the parameters it promises, on BERT-, Llama- and GPT-2-style models."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from method_helpers import build, trainable_names
from tunelab.config import ModelConfig, load_config
from tunelab.errors import TunelabError
from tunelab.methods import apply_method, print_trainable_summary, trainable_summary
from tunelab.models import load_model
from tunelab.testing import tiny_model


def names(model):
    return {n for n, _ in model.named_parameters()}


def test_full_trains_everything(tiny_llama_dir):
    _, model = build(tiny_llama_dir, "causal_lm", {"name": "full"})
    assert trainable_names(model) == names(model)


def test_freeze_top_layers_llama(tiny_llama_dir):
    _, model = build(tiny_llama_dir, "causal_lm", {"name": "freeze", "freeze": {"top_n_layers": 1}})
    expected = {n for n in names(model) if n.startswith("model.layers.1.")} | {"model.norm.weight"}
    assert trainable_names(model) == expected


def test_freeze_top_layers_gpt2(tiny_gpt2_dir):
    _, model = build(tiny_gpt2_dir, "causal_lm", {"name": "freeze", "freeze": {"top_n_layers": 1}})
    expected = {n for n in names(model) if n.startswith(("transformer.h.1.", "transformer.ln_f."))}
    assert trainable_names(model) == expected


def test_freeze_top_layers_bert_with_pooler_and_head(tiny_bert_dir):
    method = {"name": "freeze", "freeze": {"top_n_layers": 1}}
    _, model = build(tiny_bert_dir, "classification", method)
    prefixes = ("bert.encoder.layer.1.", "bert.pooler.", "classifier.")
    assert trainable_names(model) == {n for n in names(model) if n.startswith(prefixes)}


def test_freeze_default_trains_the_top_two_blocks_and_head():
    model = tiny_model(
        "bert", 64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=2, max_position_embeddings=512,
    )  # fmt: skip
    cfg = load_config(
        {
            "model": {"name_or_path": "unused"},
            "data": {"path": "unused.jsonl", "format": "classification"},
            "method": {"name": "freeze"},
            "output": {"dir": "run"},
        }
    )
    apply_method(model, cfg.method, "classification")
    prefixes = ("bert.encoder.layer.1.", "bert.encoder.layer.2.", "bert.pooler.", "classifier.")
    assert trainable_names(model) == {n for n in names(model) if n.startswith(prefixes)}


def test_freeze_default_on_a_two_block_model_trains_both(tiny_llama_dir):
    _, model = build(tiny_llama_dir, "causal_lm", {"name": "freeze"})
    expected = {n for n in names(model) if n.startswith("model.layers.")} | {"model.norm.weight"}
    assert trainable_names(model) == expected


def test_freeze_patterns_without_head(tiny_bert_dir):
    method = {
        "name": "freeze",
        "freeze": {"patterns": [r"attention\.self\.query"], "train_head": False},
    }
    _, model = build(tiny_bert_dir, "classification", method)
    assert trainable_names(model) == {
        f"bert.encoder.layer.{i}.attention.self.query.{kind}"
        for i in (0, 1)
        for kind in ("weight", "bias")
    }


def test_freeze_errors(tiny_llama_dir):
    with pytest.raises(TunelabError, match="top_n_layers is 5 but the model has 2 blocks"):
        build(tiny_llama_dir, "causal_lm", {"name": "freeze", "freeze": {"top_n_layers": 5}})
    with pytest.raises(TunelabError, match="match no parameter"):
        build(tiny_llama_dir, "causal_lm", {"name": "freeze", "freeze": {"patterns": ["nope"]}})


def test_bitfit_bert(tiny_bert_dir):
    _, model = build(tiny_bert_dir, "classification", {"name": "bitfit"})
    expected = {n for n in names(model) if n.endswith("bias")} | {"classifier.weight"}
    assert trainable_names(model) == expected
    _, model = build(
        tiny_bert_dir, "classification", {"name": "bitfit", "bitfit": {"train_head": False}}
    )
    assert trainable_names(model) == {
        n for n in names(model) if n.endswith("bias") and not n.startswith("classifier.")
    }


def test_bitfit_gpt2_trains_all_biases(tiny_gpt2_dir):
    _, model = build(tiny_gpt2_dir, "causal_lm", {"name": "bitfit"})
    assert trainable_names(model) == {n for n in names(model) if n.endswith("bias")}


def test_bitfit_qwen2_trains_only_qkv_biases(tiny_qwen2_dir):
    _, model = build(tiny_qwen2_dir, "causal_lm", {"name": "bitfit"})
    assert trainable_names(model) == {
        f"model.layers.{i}.self_attn.{p}_proj.bias" for i in (0, 1) for p in "qkv"
    }


def test_bitfit_on_bias_free_llama_fails(tiny_llama_dir):
    with pytest.raises(TunelabError, match=r"has no bias terms.*use method lora or adapter"):
        build(tiny_llama_dir, "causal_lm", {"name": "bitfit"})


@pytest.mark.parametrize(("kind", "sites"), [("pfeiffer", 1), ("houlsby", 2)])
def test_adapter_trains_only_adapters(tiny_llama_dir, kind, sites):
    method = {"name": "adapter", "adapter": {"kind": kind, "bottleneck_size": 4}}
    _, model = build(tiny_llama_dir, "causal_lm", method)
    trained = trainable_names(model)
    assert all(".adapter." in n for n in trained)
    assert len(trained) == 2 * sites * 4  # layers x sites x (down, up) x (weight, bias)
    assert model.get_submodule("model.layers.0.mlp.down_proj.adapter.down").out_features == 4


def test_adapter_bert_with_head_and_reduction_factor(tiny_bert_dir):
    method = {"name": "adapter", "adapter": {"kind": "houlsby", "reduction_factor": 8}}
    _, model = build(tiny_bert_dir, "classification", method)
    trained = trainable_names(model)
    assert {n for n in trained if ".adapter." not in n} == {"classifier.weight", "classifier.bias"}
    wrapped = {n.split(".adapter.")[0] for n in trained if ".adapter." in n}
    assert wrapped == {
        f"bert.encoder.layer.{i}.{s}"
        for i in (0, 1)
        for s in ("attention.output.dense", "output.dense")
    }
    assert model.get_submodule("bert.encoder.layer.0.output.dense.adapter.down").out_features == 4


def test_adapter_gpt2_sites(tiny_gpt2_dir):
    _, model = build(
        tiny_gpt2_dir, "causal_lm", {"name": "adapter", "adapter": {"kind": "houlsby"}}
    )
    wrapped = {n.split(".adapter.")[0] for n in trainable_names(model)}
    assert wrapped == {f"transformer.h.{i}.{s}.c_proj" for i in (0, 1) for s in ("attn", "mlp")}


def test_lora_all_linear_except_head(tiny_llama_dir):
    method = {"name": "lora", "lora": {"r": 4}}
    _, model = build(tiny_llama_dir, "causal_lm", method)
    trained = trainable_names(model)
    assert all(re.search(r"\.lora_[AB]\.default\.weight$", n) for n in trained)
    modules = {n.split(".")[-4] for n in trained}
    assert modules == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert len(trained) == 2 * 7 * 2


def test_lora_classification_trains_head_and_dora(tiny_bert_dir):
    method = {"name": "lora", "lora": {"target_modules": ["query", "value"], "use_dora": True}}
    _, model = build(tiny_bert_dir, "classification", method)
    trained = trainable_names(model)
    head = {n for n in trained if "classifier" in n}
    assert head == {
        f"base_model.model.classifier.modules_to_save.default.{k}" for k in ("weight", "bias")
    }
    lora = trained - head
    assert {n.split(".")[-4] for n in lora} == {"query", "value"}
    assert sum("lora_magnitude_vector" in n for n in lora) == 4


def test_prompt_tuning_text_init(tiny_llama_dir):
    method = {
        "name": "prompt_tuning",
        "prompt_tuning": {"num_virtual_tokens": 5, "init": "text", "init_text": "hello world"},
    }
    _, model = build(tiny_llama_dir, "causal_lm", method)
    assert trainable_names(model) == {"prompt_encoder.default.embedding.weight"}
    assert model.prompt_encoder["default"].embedding.weight.shape == (5, 32)


def test_prefix_tuning_with_reparameterisation(tiny_gpt2_dir):
    method = {
        "name": "prefix_tuning",
        "prefix_tuning": {
            "num_virtual_tokens": 3,
            "reparameterize": True,
            "encoder_hidden_size": 16,
        },
    }
    _, model = build(tiny_gpt2_dir, "causal_lm", method)
    trained = trainable_names(model)
    assert "prompt_encoder.default.embedding.weight" in trained
    assert all(n.startswith("prompt_encoder.default.") for n in trained)
    assert any("transform" in n for n in trained)


def test_trainable_summary_groups_layers(tiny_llama_dir):
    _, model = build(
        tiny_llama_dir,
        "causal_lm",
        {"name": "lora", "lora": {"r": 2, "target_modules": ["q_proj"]}},
    )
    summary = trainable_summary(model)
    assert summary.trainable == 2 * (2 * 32 + 32 * 2)
    assert summary.total == sum(p.numel() for p in model.parameters())
    assert [name for name, _ in summary.modules] == [
        "base_model.model.model.layers.[0-1].self_attn.q_proj.lora_A.default.weight",
        "base_model.model.model.layers.[0-1].self_attn.q_proj.lora_B.default.weight",
    ]
    console = Console(record=True, width=200)
    print_trainable_summary(summary, console)
    text = console.export_text()
    assert f"trainable parameters: 256 / {summary.total:,} ({summary.percent:.3f}%)" in text


def test_full_model_load_is_plain(tiny_llama_dir):
    model = load_model(ModelConfig(name_or_path=str(tiny_llama_dir)), "causal_lm")
    assert trainable_summary(model).percent == 100.0
