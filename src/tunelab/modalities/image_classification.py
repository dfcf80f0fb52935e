"""``data.format: image_classification``: an image and a label per row, or a label folder.

Rows: ``{"image": PATH or bytes, "label": NAME}`` (``data.columns.image`` / ``label``; a path
is relative to the data file), or ``data.path`` a folder with one sub-folder of images per
label. The model directory's image processor (``preprocessor_config.json``) resizes, crops
and normalises; ``data.augment`` adds a random crop / flip at training time only. Models load
with ``AutoModelForImageClassification`` (a new head for the labels: ViT, DINOv2,
MobileNetV2, ...). Methods: full, freeze, bitfit, lora (attention projections, or the 1x1
convolutions of a CNN, when ``target_modules`` is ``all-linear``), adapter on transformer
backbones; prompt/prefix tuning, packing and the chunked loss are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import TunelabError, first_line
from tunelab.modalities.base import Collate, Modality, Processor
from tunelab.modalities.images import IMAGE_SUFFIXES, ImageCollator, image_reference

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tunelab.config import DataConfig, MethodConfig, ModelConfig

ATTENTION_PAIRS = (("q_proj", "v_proj"), ("query", "value"))


class ImageClassification(Modality):
    format = "image_classification"
    task = "classification"
    input_key = "image"
    folder_suffixes = IMAGE_SUFFIXES

    def media(self, value: Any, base: Path) -> Any:
        return image_reference(value, base)

    def load_processor(self, source: str, model_cfg: ModelConfig) -> Processor:
        from transformers import AutoImageProcessor

        try:
            inner = AutoImageProcessor.from_pretrained(
                source, trust_remote_code=model_cfg.trust_remote_code
            )
        except (OSError, ValueError, KeyError) as exc:
            raise TunelabError(
                f"model {model_cfg.name_or_path!r}: no image processor ({first_line(exc)}); "
                "data.format image_classification needs an image model directory with a "
                "preprocessor_config.json"
            ) from None
        return Processor(inner)

    def adjust_processor(self, processor: Processor, data: DataConfig) -> Processor:
        """``data.image_size``: resize straight to that square (no centre crop)."""
        if data.image_size is not None:
            square = {"height": data.image_size, "width": data.image_size}
            inner = processor.inner
            inner.size, inner.do_center_crop = square, False
            if getattr(inner, "crop_size", None) is not None:
                inner.crop_size = square
        return processor

    def collator(self, processor: Processor, data: DataConfig | None, train: bool) -> Collate:
        augment = data.augment if train and data is not None else None
        return ImageCollator(processor.inner, self.input_key, augment)

    def check_model(self, config: Any, name: str) -> None:
        from transformers.models.auto import modeling_auto as auto

        kind = config.model_type
        if kind not in auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
            raise TunelabError(
                f"model {name!r} ({kind}) is not an image classification model; "
                "data.format image_classification needs an image model (ViT, DINOv2, "
                "MobileNetV2, ...)"
            )

    def auto_class(self) -> Any:
        from transformers import AutoModelForImageClassification

        return AutoModelForImageClassification

    def method_config(self, method_cfg: MethodConfig, model: nn.Module) -> MethodConfig:
        """LoRA targets per architecture; adapters only on transformers; BatchNorm layers
        pinned to eval mode unless the method saves the whole model (its artifact keeps
        trained tensors only, so statistics updated in training would be lost)."""
        from tunelab.methods.registry import get_method

        name = method_cfg.name
        if not get_method(name).whole_model:
            pin_batch_norm(model)
        if name == "adapter" and not hasattr(model.config, "hidden_size"):
            raise TunelabError(
                f"method adapter needs a transformer backbone; {type(model).__name__} is a "
                "CNN: use lora, freeze, bitfit or full"
            )
        if name != "lora" or method_cfg.settings.target_modules != "all-linear":
            return method_cfg
        targets = lora_targets(model)
        settings = method_cfg.settings.model_copy(update={"target_modules": targets})
        return method_cfg.model_copy(update={"lora": settings})

    def loss_fn(self, chunk_size: int | None) -> Any:
        return pixel_classification_loss


def pin_batch_norm(model: nn.Module) -> None:
    """Every BatchNorm layer normalises with its loaded running statistics, in training too.

    In train mode BatchNorm normalises with the batch's own statistics; with the statistics
    kept as loaded, evaluation would normalise differently from training (ImageNet colour
    statistics against grey 28 px clothes) and the more the tuned weights adapt to the
    batch statistics, the worse evaluation gets. Pinned, training and evaluation compute the
    same function; the affine weight and bias still train (BitFit's BatchNorm biases).
    """
    import types

    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train = types.MethodType(stay_in_eval_mode, module)
            module.train(False)


def stay_in_eval_mode(module: nn.Module, mode: bool = True) -> nn.Module:
    """``train(mode)`` of a pinned BatchNorm layer: it stays in eval mode."""
    from torch import nn

    return nn.Module.train(module, False)


def lora_targets(model: nn.Module) -> list[str]:
    """LoRA's default targets: the query/value projections of a vision transformer, else
    every 1x1 ungrouped convolution of a CNN (MobileNetV2's expand/reduce layers)."""
    from torch import nn

    leaves = {name.rpartition(".")[2] for name, _ in model.named_modules()}
    for pair in ATTENTION_PAIRS:
        if set(pair) <= leaves:
            return list(pair)
    if getattr(model.config, "tf_padding", False):
        raise TunelabError(
            f"method lora on {type(model).__name__}: its convolutions use TensorFlow padding "
            "(config tf_padding: true), which PEFT's LoRA layers do not keep; convert the "
            "model with tf_padding false, or use freeze, bitfit or full"
        )
    convs = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
    ]
    if not convs:
        raise TunelabError(
            f"method lora: no attention projections or 1x1 convolutions in "
            f"{type(model).__name__}; set method.lora.target_modules"
        )
    return convs


def pixel_classification_loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
    """Summed fp32 cross-entropy of the images' logits, and the number of images."""
    import torch.nn.functional as F

    logits = model(pixel_values=batch["pixel_values"]).logits
    labels = batch["labels"]
    return F.cross_entropy(logits.float(), labels, reduction="sum"), labels.numel()


MODALITY = ImageClassification()
