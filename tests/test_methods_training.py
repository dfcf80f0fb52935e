"""A few AdamW steps lower the training loss for every method; adapters start as the identity."""

from __future__ import annotations

import pytest
import torch

from method_helpers import batch, build, logits
from tunelab.config import ModelConfig
from tunelab.errors import TunelabError
from tunelab.methods import load_trainable_state_dict, trainable_state_dict
from tunelab.models import load_model

CASES = [
    ("llama", "causal_lm", {"name": "full"}, 1e-2),
    ("llama", "causal_lm", {"name": "freeze", "freeze": {"top_n_layers": 1}}, 1e-2),
    ("gpt2", "causal_lm", {"name": "bitfit"}, 5e-2),
    ("bert", "classification", {"name": "bitfit"}, 5e-2),
    ("llama", "causal_lm", {"name": "adapter", "adapter": {"kind": "houlsby"}}, 1e-2),
    ("bert", "classification", {"name": "adapter", "adapter": {"kind": "pfeiffer"}}, 1e-2),
    ("gpt2", "causal_lm", {"name": "lora", "lora": {"use_rslora": True}}, 1e-2),
    ("bert", "classification", {"name": "lora"}, 1e-2),
    ("llama", "causal_lm", {"name": "prompt_tuning"}, 1e-1),
    ("llama", "causal_lm", {"name": "prefix_tuning"}, 1e-2),
    ("bert", "classification", {"name": "prefix_tuning"}, 1e-2),
]


def model_dir(request, kind):
    return request.getfixturevalue(f"tiny_{kind}_dir")


@pytest.mark.parametrize(("kind", "task", "method", "lr"), CASES, ids=lambda c: str(c))
def test_steps_lower_the_loss(request, kind, task, method, lr):
    torch.manual_seed(0)
    _, model = build(model_dir(request, kind), task, method)
    model.eval()  # no dropout: the loss change comes from the updates alone
    inputs = batch(task)
    params = [p for p in model.parameters() if p.requires_grad]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW(params, lr=lr)
    losses = []
    for _ in range(6):
        loss = model(**inputs).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert losses[-1] < losses[0] - 1e-3
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


@pytest.mark.parametrize(
    ("kind", "task", "adapter_kind", "activation"),
    [
        ("llama", "causal_lm", "houlsby", "silu"),
        ("gpt2", "causal_lm", "houlsby", "gelu"),
        ("bert", "classification", "pfeiffer", "relu"),
        ("bert", "classification", "houlsby", "tanh"),
    ],
)
def test_adapters_are_the_identity_at_init(request, kind, task, adapter_kind, activation):
    directory = model_dir(request, kind)
    inputs = batch(task)
    base = load_model(
        ModelConfig(name_or_path=str(directory)),
        task,
        ["neg", "neu", "pos"] if task == "classification" else None,
    )
    expected = logits(base, inputs)
    method = {
        "name": "adapter",
        "adapter": {"kind": adapter_kind, "activation": activation, "dropout": 0.1},
    }
    _, adapted = build(directory, task, method)
    assert torch.equal(logits(adapted, inputs), expected)


def test_trainable_state_dict_round_trip(tiny_bert_dir):
    _, model = build(tiny_bert_dir, "classification", {"name": "bitfit"})
    state = {n: t.clone() + 1 for n, t in trainable_state_dict(model).items()}
    assert set(state) == {n for n, p in model.named_parameters() if p.requires_grad}
    _, fresh = build(tiny_bert_dir, "classification", {"name": "bitfit"})
    load_trainable_state_dict(fresh, state)
    assert all(torch.equal(t, state[n]) for n, t in trainable_state_dict(fresh).items())
    with pytest.raises(TunelabError, match="1 missing"):
        load_trainable_state_dict(fresh, dict(list(state.items())[1:]))
