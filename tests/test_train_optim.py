"""Parameter groups: no decay on biases/norms/embeddings, LLRD and LR multipliers, optimizers."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tunelab.config import TrainConfig
from tunelab.train.optim import build_optimizer, param_groups, param_infos


@pytest.fixture
def bert(tiny_bert_dir):
    return AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)


def test_weight_decay_grouping(bert):
    infos = {i.name: i for i in param_infos(bert, TrainConfig(weight_decay=0.1))}
    no_decay = {n for n, i in infos.items() if not i.decay}
    assert "bert.embeddings.word_embeddings.weight" in no_decay
    assert "bert.embeddings.position_embeddings.weight" in no_decay
    assert "bert.encoder.layer.0.attention.output.LayerNorm.weight" in no_decay
    assert "bert.encoder.layer.1.intermediate.dense.bias" in no_decay
    assert "classifier.bias" in no_decay
    decay = {n for n, i in infos.items() if i.decay}
    assert "bert.encoder.layer.0.attention.self.query.weight" in decay
    assert "classifier.weight" in decay
    groups = param_groups(bert, TrainConfig(weight_decay=0.1))
    assert sorted(g["weight_decay"] for g in groups) == [0.0, 0.1]
    assert sum(len(g["params"]) for g in groups) == len(list(bert.parameters()))


def test_llrd_group_lrs(bert):
    cfg = TrainConfig(lr=1.0, llrd=0.5)
    lr = {n: i.lr_scale for i in param_infos(bert, cfg) for n in [i.name]}
    assert lr["classifier.weight"] == 1.0
    assert lr["bert.pooler.dense.weight"] == 1.0
    assert lr["bert.encoder.layer.1.output.dense.weight"] == 0.5  # top block
    assert lr["bert.encoder.layer.0.output.dense.weight"] == 0.25
    assert lr["bert.embeddings.word_embeddings.weight"] == 0.125  # lowest
    groups = param_groups(bert, cfg)
    by_name = {n: g["lr"] for g in groups for n in g["names"]}
    assert by_name["bert.encoder.layer.0.attention.self.key.bias"] == 0.25


def test_lr_multipliers_combine_with_llrd(bert):
    cfg = TrainConfig(lr=1.0, llrd=0.5, lr_multipliers={r"^classifier\.": 10.0, "query": 2.0})
    lr = {i.name: i.lr_scale for i in param_infos(bert, cfg)}
    assert lr["classifier.weight"] == 10.0
    assert lr["bert.encoder.layer.1.attention.self.query.weight"] == 1.0
    assert lr["bert.encoder.layer.1.attention.self.key.weight"] == 0.5


def test_frozen_parameters_are_left_out(bert):
    for name, p in bert.named_parameters():
        p.requires_grad_(name.startswith("classifier"))
    groups = param_groups(bert, TrainConfig())
    assert sorted(n for g in groups for n in g["names"]) == ["classifier.bias", "classifier.weight"]


def test_optimizers(bert):
    adamw = build_optimizer(bert, TrainConfig(betas=(0.8, 0.99), eps=1e-6))
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["fused"] or adamw.defaults["foreach"]
    assert adamw.defaults["betas"] == (0.8, 0.99)
    sgd = build_optimizer(bert, TrainConfig(optimizer="sgd", momentum=0.5, weight_decay=0.01))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.5
    assert {g["weight_decay"] for g in sgd.param_groups} == {0.0, 0.01}
