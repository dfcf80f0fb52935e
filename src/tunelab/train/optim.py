"""Parameter groups (weight decay, layer-wise LR decay, LR multipliers) and the optimizer."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from tunelab.config import TrainConfig
from tunelab.errors import TunelabError


@dataclass(frozen=True)
class ParamInfo:
    """How one trainable parameter is optimised."""

    name: str
    lr_scale: float
    decay: bool


def no_decay_names(model: nn.Module) -> set[str]:
    """Parameters that get no weight decay: biases, norm weights (1-D) and embeddings."""
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    return {
        name
        for name, p in model.named_parameters()
        if p.ndim < 2 or id(p) in embedding_ids or "norm" in name.lower()
    }


def llrd_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """Layer-wise LR decay: LR scale per parameter name.

    With ``L`` blocks, block ``i`` gets ``decay ** (L - i)``, everything registered before the
    blocks (embeddings) ``decay ** (L + 1)``, everything after them (final norm, head) 1.
    """
    from tunelab.methods.common import find_blocks

    blocks_name, blocks = find_blocks(model)
    n_blocks = len(blocks)
    layer = re.compile(rf"^{re.escape(blocks_name)}\.(\d+)\.")
    scales: dict[str, float] = {}
    seen_blocks = False
    for name, _ in model.named_parameters():
        match = layer.match(name)
        if match:
            seen_blocks = True
            scales[name] = decay ** (n_blocks - int(match.group(1)))
        else:
            scales[name] = 1.0 if seen_blocks else decay ** (n_blocks + 1)
    return scales


def param_infos(model: nn.Module, cfg: TrainConfig) -> list[ParamInfo]:
    """LR scale and decay flag of every trainable parameter (``llrd`` x ``lr_multipliers``)."""
    no_decay = no_decay_names(model)
    scales = llrd_scales(model, cfg.llrd) if cfg.llrd is not None else {}
    patterns = [(re.compile(p), m) for p, m in cfg.lr_multipliers.items()]
    infos = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        scale = scales.get(name, 1.0)
        for pattern, multiplier in patterns:
            if pattern.search(name):
                scale *= multiplier
                break
        infos.append(ParamInfo(name, scale, name not in no_decay))
    return infos


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Optimizer groups: one per (LR scale, decay) pair, each with its own ``lr``."""
    params = dict(model.named_parameters())
    groups: dict[tuple[float, bool], dict] = {}
    for info in param_infos(model, cfg):
        key = (info.lr_scale, info.decay)
        group = groups.setdefault(
            key,
            {
                "params": [],
                "names": [],
                "lr": cfg.lr * info.lr_scale,
                "weight_decay": cfg.weight_decay if info.decay else 0.0,
            },
        )
        group["params"].append(params[info.name])
        group["names"].append(info.name)
    if not groups:
        raise TunelabError("no trainable parameters: the method froze the whole model")
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (fused where supported, else foreach) or SGD over :func:`param_groups`."""
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    kwargs = {"lr": cfg.lr, "betas": tuple(cfg.betas), "eps": cfg.eps}
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, foreach=True, **kwargs)
