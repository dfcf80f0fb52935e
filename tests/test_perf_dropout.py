"""Fast CPU dropout: right drop probability and scaling, SDPA's math, unchanged evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from tunelab.testing import tiny_model
from tunelab.train.fast_dropout import (
    ATTENTION_NAME,
    FastDropout,
    attention_math,
    fast_dropout,
    keep_mask,
    sdpa_with_fast_dropout,
    use_fast_dropout,
)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_mask_drops_with_probability_p_in_every_bit_lane(p):
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([1000, 2000]), p, torch.device("cpu"))
    assert keep.dtype == torch.bool
    assert (~keep).float().mean().item() == pytest.approx(p, abs=2e-3)
    # each int16 comes from one quarter of an int64 word: all four lanes must be unbiased
    lanes = (~keep).flatten().view(-1, 4).float().mean(0)
    assert lanes.tolist() == pytest.approx([p] * 4, abs=4e-3)


def test_fast_dropout_scales_kept_values_and_gradients():
    torch.manual_seed(1)
    x = torch.randn(300, 400, requires_grad=True)
    out = fast_dropout(x, 0.2)
    kept = out != 0
    assert (~kept).float().mean().item() == pytest.approx(0.2, abs=5e-3)
    assert torch.allclose(out[kept], x[kept] / 0.8)
    out.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.8)
    assert fast_dropout(x, 0.2, training=False) is x
    assert fast_dropout(x, 0.0) is x


def test_fast_dropout_follows_the_torch_seed():
    torch.manual_seed(3)
    a = fast_dropout(torch.ones(1000), 0.5)
    torch.manual_seed(3)
    assert torch.equal(a, fast_dropout(torch.ones(1000), 0.5))


def _qkv(batch=2, heads=4, kv_heads=4, q_len=7, k_len=7, dim=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, q_len, dim, generator=gen)
    k = torch.randn(batch, kv_heads, k_len, dim, generator=gen)
    v = torch.randn(batch, kv_heads, k_len, dim, generator=gen)
    return q, k, v


class _Module(nn.Module):
    def __init__(self, causal: bool, groups: int = 1):
        super().__init__()
        self.is_causal = causal
        self.num_key_value_groups = groups


@pytest.mark.parametrize(
    "case", ["padding_bool", "causal", "additive_float", "gqa_causal", "longer_keys_causal"]
)
def test_attention_math_equals_sdpa(case):
    heads, kv_heads, q_len, k_len, causal, mask = 4, 4, 7, 7, False, None
    if case == "padding_bool":
        mask = torch.ones(2, 1, 7, 7, dtype=torch.bool)
        mask[1, :, :, 5:] = False
    elif case == "causal":
        causal = True
    elif case == "additive_float":
        mask = torch.randn(2, 1, 7, 7)
    elif case == "gqa_causal":
        kv_heads, causal = 2, True
    else:
        q_len, k_len, causal = 3, 7, True
    q, k, v = _qkv(heads=heads, kv_heads=kv_heads, q_len=q_len, k_len=k_len)
    module = _Module(causal, heads // kv_heads)
    expected, _ = sdpa_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=0.3)
    if case == "longer_keys_causal":  # SDPA's is_causal aligns top-left: build the mask
        allowed = torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len)
        expected, _ = sdpa_attention_forward(module, q, k, v, allowed[None, None], scaling=0.3)
    got = attention_math(q, k, v, mask, 0.3, causal and mask is None, 0.0)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("case", ["padding_bool", "causal"])
def test_attention_math_gradients_equal_sdpa(case):
    """The mask is applied outside autograd: gradients must still equal SDPA's."""
    mask = None
    if case == "padding_bool":
        mask = torch.ones(2, 1, 7, 7, dtype=torch.bool)
        mask[0, :, :, 4:] = False
    grads = []
    for run in ("sdpa", "math"):
        q, k, v = (t.requires_grad_() for t in _qkv(seed=5))
        if run == "sdpa":
            out, _ = sdpa_attention_forward(_Module(case == "causal"), q, k, v, mask, scaling=0.3)
        else:
            out = attention_math(q, k, v, mask, 0.3, case == "causal", 0.0)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([q.grad, k.grad, v.grad])
    for expected, got in zip(*grads, strict=True):
        assert torch.allclose(got, expected, atol=1e-5)


def test_attention_dropout_is_unbiased_and_off_in_eval():
    q, k, v = _qkv(batch=1, heads=2, kv_heads=2, q_len=5, k_len=5)
    module = _Module(causal=False).train()
    plain, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.35)
    torch.manual_seed(0)
    draws = torch.stack(
        [
            sdpa_with_fast_dropout(module, q, k, v, None, dropout=0.3, scaling=0.35)[0]
            for _ in range(2000)
        ]
    )
    assert not torch.allclose(draws[0], plain, atol=1e-3)  # dropout applied
    assert torch.allclose(draws.mean(0), plain, atol=0.05)  # E[dropout(P)] V = P V
    module.eval()
    evaluated, _ = sdpa_with_fast_dropout(module, q, k, v, None, dropout=0.3, scaling=0.35)
    assert torch.equal(evaluated, plain)


def test_use_fast_dropout_on_bert_keeps_eval_outputs_and_trains():
    model = tiny_model(
        "bert", 120, max_position_embeddings=512, hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )  # fmt: skip
    ids = torch.randint(5, 120, (4, 12))
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    swapped = use_fast_dropout(model)
    assert swapped == sum(isinstance(m, FastDropout) for m in model.modules()) > 0
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert model.config._attn_implementation == ATTENTION_NAME
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, before)
    model.train()
    labels = torch.tensor([0, 1, 2, 1])
    first = model(input_ids=ids, attention_mask=mask, labels=labels)
    second = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert not torch.equal(first.logits, second.logits)  # dropout masks differ per call
    first.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_train_fast_dropout_switch_changes_the_masks_not_the_learning(tiny_bert_dir, tmp_path):
    """``train.fast_dropout`` swaps the dropout in a real run: the same seed gives a different
    (still finite, still decreasing) loss curve than torch's dropout, and repeats exactly."""
    from train_helpers import cls_config, metrics, write_classification_data
    from tunelab.train import train

    data = write_classification_data(tmp_path / "cls.jsonl", n=64)
    split = {"train": 1.0, "validation": 0.0, "test": 0.0}
    settings = {"max_steps": 6, "dropout": 0.1, "attention_dropout": 0.1}
    curves = {}
    for name, fast in (("torch", False), ("fast", True), ("fast_again", True)):
        cfg = cls_config(tiny_bert_dir, data, tmp_path / name, {**settings, "fast_dropout": fast})
        cfg.data.split.train, cfg.data.split.validation, cfg.data.split.test = split.values()
        train(cfg, resume=False)
        curves[name] = [r["loss"] for r in metrics(tmp_path / name)]
    assert curves["fast"] != curves["torch"]
    assert curves["fast"] == curves["fast_again"]
    for losses in curves.values():
        assert len(losses) == 6 and all(map(math.isfinite, losses))
        assert losses[-1] < losses[0]


def _dropout_owners(model: nn.Module) -> dict[str, type]:
    return {n: type(m) for n, m in model.named_modules() if isinstance(m, nn.Dropout)}


def test_adapter_scope_swaps_only_the_dropout_lora_adds():
    """``scope="adapters"``: LoRA's ``lora_dropout`` gets cheap masks; BERT's own hidden and
    attention dropout and its SDPA attention stay torch's."""
    from peft import LoraConfig, get_peft_model

    base = tiny_model(
        "bert", 120, max_position_embeddings=512, hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )  # fmt: skip
    attention = base.config._attn_implementation
    model = get_peft_model(base, LoraConfig(r=4, lora_dropout=0.2, target_modules=["query"]))
    before = _dropout_owners(model)
    swapped = use_fast_dropout(model, "adapters")
    after = _dropout_owners(model)
    lora = {n for n in before if ".lora_dropout." in n}
    assert lora and swapped == len(lora)
    assert all(after[n] is FastDropout for n in lora)
    assert all(after[n] is nn.Dropout for n in before if n not in lora)
    assert model.config._attn_implementation == attention != ATTENTION_NAME
    assert all(m.p == 0.2 for n, m in model.named_modules() if n in lora)


def test_adapter_scope_covers_bottleneck_adapters():
    from tunelab.methods.adapter import AdapterSettings, apply_adapter

    model = tiny_model("llama", 120)  # Llama has no dropout modules of its own
    assert not _dropout_owners(model)
    model = apply_adapter(model, AdapterSettings(dropout=0.1), "causal_lm")
    adapters = set(_dropout_owners(model))
    assert adapters and use_fast_dropout(model, "adapters") == len(adapters)
    assert set(_dropout_owners(model).values()) == {FastDropout}


def test_default_fast_dropout_masks_lora_dropout_in_a_run(tiny_llama_dir, tmp_path):
    """The default (``adapters``) changes LoRA's masks against torch's dropout (``false``), and
    on a model without dropout of its own (Llama) it equals ``true`` exactly."""
    from train_helpers import lm_config, metrics, write_text_data
    from tunelab.train import train

    data = write_text_data(tmp_path / "text.jsonl", n=32)
    curves = {}
    for name, fast in (("default", None), ("all", True), ("torch", False)):
        cfg = lm_config(tiny_llama_dir, data, tmp_path / name, {"max_steps": 4})
        cfg.method.lora.dropout = 0.3
        if fast is not None:
            cfg.train.fast_dropout = fast
        assert cfg.train.fast_dropout == ("adapters" if fast is None else fast)
        train(cfg, resume=False)
        curves[name] = [r["loss"] for r in metrics(tmp_path / name)]
    assert curves["default"] == curves["all"]
    assert curves["default"] != curves["torch"]
    assert all(len(c) == 4 and all(map(math.isfinite, c)) for c in curves.values())
