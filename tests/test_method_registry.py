"""A method defined in this file alone: registered with one call, then trained, saved, loaded,
predicted with and exported through tunelab's normal paths (no edit anywhere else).

The toy method ``scale`` learns a per-channel scale on the model's final LayerNorm (plus the
classification head). Its artifact uses the default layout (the trained tensors); its export
folds the scale into the LayerNorm's weight and bias, so plain Transformers loads it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import Field
from torch import nn

import tunelab
from train_helpers import write_classification_data
from tunelab.config import Section, Task, json_schema, load_config
from tunelab.errors import ConfigError
from tunelab.methods.base import Artifact, Method, save_whole
from tunelab.methods.common import head_names, set_trainable
from tunelab.methods.registry import register, unregister


class ScaleSettings(Section):
    """A learned per-channel scale on the final norm."""

    init: float = Field(default=1.0, gt=0, description="Initial value of every scale.")


class Scaled(nn.Module):
    """``norm(x) * scale``, one scale per channel."""

    def __init__(self, norm: nn.LayerNorm, init: float) -> None:
        super().__init__()
        self.norm = norm
        self.scale = nn.Parameter(torch.full_like(norm.weight, init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * self.scale


def _final_norm(model: nn.Module) -> str | None:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]
    return names[-1] if names else None


class Scale(Method):
    name = "scale"
    settings = ScaleSettings
    description = "a per-channel scale on the final LayerNorm (and the head) trains"

    def supports(self, task: Task, model: nn.Module) -> str | None:
        return None if _final_norm(model) else "method scale: the model has no LayerNorm"

    def apply(self, model: nn.Module, settings: ScaleSettings, task: Task) -> nn.Module:
        path = _final_norm(model)
        parent, _, leaf = path.rpartition(".")
        setattr(model.get_submodule(parent), leaf, Scaled(model.get_submodule(path), settings.init))
        scales = {n for n, _ in model.named_parameters() if n.endswith(".scale")}
        set_trainable(model, scales | head_names(model, task))
        return model

    def export(self, artifact: Artifact, folder: Path, shown: Path) -> str:
        model, tokenizer = artifact.load()
        for name, module in list(model.named_modules()):
            if isinstance(module, Scaled):
                with torch.no_grad():
                    module.norm.weight.mul_(module.scale)
                    module.norm.bias.mul_(module.scale)
                parent, _, leaf = name.rpartition(".")
                setattr(model.get_submodule(parent), leaf, module.norm)
        save_whole(model, tokenizer, folder)
        return f"folded the scales into the final norm; exported to {shown}"


@pytest.fixture
def scale_method():
    method = register(Scale())
    yield method
    unregister(method.name)


def _raw(model_dir: Path, tmp_path: Path, **method) -> dict:
    data = write_classification_data(tmp_path / "train.jsonl", n=24)
    return {
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "path": str(data),
            "format": "classification",
            "max_length": 32,
            "cache_dir": str(tmp_path / "cache"),
        },
        "method": method,
        "train": {"max_steps": 3, "batch_size": 8, "lr": 5e-2, "report_to": []},
        "eval": {"at_end": False},
        "output": {"dir": str(tmp_path / "run")},
    }


def test_a_registered_toy_method_trains_saves_loads_and_exports(
    scale_method, tiny_bert_dir, tmp_path
):
    from transformers import AutoModelForSequenceClassification

    cfg = load_config(_raw(tiny_bert_dir, tmp_path, name="scale", scale={"init": 0.5}))
    assert cfg.method.settings == ScaleSettings(init=0.5)
    assert "ScaleMethod" in json_schema()["$defs"]
    tunelab.finetune(cfg)

    loaded = tunelab.load(cfg.run_dir)
    assert loaded.method == "scale"
    scales = [m.scale for m in loaded.model.modules() if isinstance(m, Scaled)]
    assert len(scales) == 1 and not torch.allclose(scales[0], torch.full_like(scales[0], 0.5))
    (result,) = tunelab.predict(loaded, ["sport a game"])
    assert result["label"] in loaded.label_names

    out = tunelab.export_run(cfg.run_dir, tmp_path / "export")
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = loaded.tokenizer(["sport a game", "film the end"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = loaded.model(**batch).logits
        got = plain(**batch).logits
    assert torch.allclose(got, expected, atol=1e-5)


def test_an_unregistered_method_is_refused_with_the_known_names(tiny_bert_dir, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(_raw(tiny_bert_dir, tmp_path, name="scale"))
    (problem,) = info.value.problems
    assert problem.startswith("method.name: got 'scale'; expected one of 'full', 'freeze'")
