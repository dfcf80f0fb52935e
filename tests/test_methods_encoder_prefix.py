"""Prefix tuning for encoder classification (tunelab's own prefixes; PEFT cannot do BERT)."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from method_helpers import LABELS, batch, build, logits
from tunelab.config import MethodConfig, ModelConfig
from tunelab.errors import TunelabError
from tunelab.methods import apply_method
from tunelab.methods.artifacts import load_artifact, save_artifact
from tunelab.models import load_model, load_tokenizer
from tunelab.testing import save_tiny_model

PREFIX = {"name": "prefix_tuning", "prefix_tuning": {"num_virtual_tokens": 5}}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory, tokenizer_dir):
    """A tiny random BERT whose outputs are not all near zero (initializer_range 0.3)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    path = tmp_path_factory.mktemp("bert_prefix")
    return save_tiny_model("bert", path, tok, max_position_embeddings=512, initializer_range=0.3)


def _base(directory, attn: str = "sdpa"):
    cfg = ModelConfig(name_or_path=str(directory), attn_implementation=attn)
    return load_model(cfg, "classification", LABELS)


def test_only_the_prefixes_and_the_head_train(bert_dir):
    _, model = build(bert_dir, "classification", PREFIX)
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    prefixes = {
        f"bert.encoder.layer.{i}.attention.self.tunelab_prefix.{kv}"
        for i in (0, 1)
        for kv in ("key", "value")
    }
    assert set(trained) == prefixes | {"classifier.weight", "classifier.bias"}
    assert all(trained[n].shape == (5, 32) for n in prefixes)  # [virtual tokens, hidden]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_prefix_changes_outputs_and_respects_padding(bert_dir, attn):
    inputs = batch("classification")
    expected = logits(_base(bert_dir, attn), inputs)
    method = MethodConfig.model_validate(PREFIX)
    model = apply_method(_base(bert_dir, attn), method, "classification")
    assert model.config._attn_implementation == attn  # the masks are built as before
    got = logits(model, inputs)
    assert (got - expected).abs().max().item() > 1e-4  # random prefixes change the outputs
    padded = {k: v.clone() for k, v in inputs.items()}
    padded["input_ids"][0, 8:] = 0
    padded["attention_mask"][0, 8:] = 0
    short = {k: inputs[k][:1, :8] for k in ("input_ids", "attention_mask")}
    assert torch.allclose(logits(model, padded)[0], logits(model, short)[0], atol=1e-5)


def test_the_prefix_alone_learns_a_toy_task(bert_dir):
    torch.manual_seed(0)
    _, model = build(bert_dir, "classification", PREFIX)
    model.eval()  # no dropout: the loss change comes from the prefix updates alone
    for param in model.classifier.parameters():
        param.requires_grad_(False)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    inputs = batch("classification")
    params = [p for p in model.parameters() if p.requires_grad]
    assert len(params) == 4
    opt = torch.optim.AdamW(params, lr=5e-2)
    losses = []
    for _ in range(8):
        loss = model(**inputs).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert losses[-1] < losses[0] - 0.05
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


def test_save_and_reload_gives_identical_logits(bert_dir, tmp_path):
    cfg, model = build(bert_dir, "classification", PREFIX, tmp_path)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param))
    inputs = batch("classification")
    expected = logits(model, inputs)
    out = save_artifact(model, cfg, tmp_path / "model", load_tokenizer(cfg.model))
    assert not (out / "adapter_config.json").exists()
    with safe_open(out / "tunelab_weights.safetensors", "pt") as fh:
        assert set(fh.keys()) == {n for n, p in model.named_parameters() if p.requires_grad}
    loaded, _ = load_artifact(out)
    assert torch.equal(logits(loaded, inputs), expected)
    assert (logits(_base(bert_dir), inputs) - expected).abs().max().item() > 1e-2


def test_encoder_prefix_refusals(bert_dir):
    method = {"name": "prefix_tuning", "prefix_tuning": {"reparameterize": True}}
    with pytest.raises(TunelabError, match="reparameterize is not available for Bert"):
        build(bert_dir, "classification", method)


def test_decoder_classification_prefix_is_still_refused(tiny_llama_dir):
    with pytest.raises(
        TunelabError, match=r"own prefixes cover BERT-style encoders\); use prompt_tuning"
    ):
        build(tiny_llama_dir, "classification", {"name": "prefix_tuning"})
