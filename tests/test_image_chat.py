"""image_chat pieces on a tiny composed LLaVA (tiny Dinov2 + tiny Llama): compose/reload, row
conversion, image-token expansion and labels, collation, loss, generation with images."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import torch

from image_chat_fixtures import IMAGE_SIZE, chat_row, save_tiny_dinov2, write_square_rows
from tunelab.data.formats import InvalidRow
from tunelab.data.templates import ChatRenderer
from tunelab.errors import TunelabError
from tunelab.modalities.base import BadFile
from tunelab.modalities.image_chat_model import (
    check_vision_language,
    generation_inputs,
    load_processor,
)
from tunelab.modalities.image_chat_rows import (
    IGNORE,
    ImageChatCollator,
    ImageTokens,
    convert_row,
    features,
    image_ref,
    open_image,
)
from tunelab.train.loss import lm_loss, supports_chunked_loss


@pytest.fixture(scope="module")
def parts(tmp_path_factory, tiny_llama_dir) -> dict[str, Path]:
    from tunelab.convert.llava import compose

    root = tmp_path_factory.mktemp("llava")
    vision = save_tiny_dinov2(root / "dinov2")
    out = compose(vision, tiny_llama_dir, root / "llava", image_size=IMAGE_SIZE)
    return {"vision": vision, "text": tiny_llama_dir, "llava": out}


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory) -> Path:
    return write_square_rows(tmp_path_factory.mktemp("squares"))


def test_compose_reloads_with_plain_from_pretrained(parts):
    from transformers import AutoModel, AutoModelForCausalLM, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(parts["llava"])
    vision = AutoModel.from_pretrained(parts["vision"])
    text = AutoModelForCausalLM.from_pretrained(parts["text"])
    for name, value in vision.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[name], value), name
    embed = model.get_input_embeddings().weight
    old = text.get_input_embeddings().weight
    assert embed.shape[0] == old.shape[0] + 1  # the image token's new row
    assert torch.equal(embed[: old.shape[0]], old)
    layer = "layers.1.mlp.down_proj.weight"
    assert torch.equal(
        model.model.language_model.state_dict()[layer], text.model.state_dict()[layer]
    )
    processor = load_processor(str(parts["llava"]))
    tokens = ImageTokens.of(processor)
    assert tokens.token_id == model.config.image_token_id == old.shape[0]
    assert tokens.per_image == (IMAGE_SIZE // 14) ** 2 == model.config.image_seq_length
    assert processor.image_processor.crop_size == {"height": IMAGE_SIZE, "width": IMAGE_SIZE}


def test_rows_become_placeholders_and_absolute_paths(rows_file):
    import json

    raw = json.loads(rows_file.read_text().splitlines()[0])
    example = convert_row(raw, "messages", rows_file.parent)
    assert example["messages"][0] == {"role": "user", "content": "<image>\nwhat colour is it"}
    assert example["images"] == [str(rows_file.parent / "images" / "red0.png")]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (chat_row("images/nope.png", "q", "a"), "image file not found"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            "no image part in any user turn",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "<image> q"},
                    {"role": "assistant", "content": "a"},
                ]
            },
            "give images as image parts",
        ),
    ],
)
def test_bad_rows_say_why(tmp_path, row, message):
    with pytest.raises(InvalidRow, match=message):
        convert_row(row, "messages", tmp_path)


def test_image_tokens_are_expanded_and_carry_no_loss(parts, rows_file):
    import json

    processor = load_processor(str(parts["llava"]))
    tok = processor.tokenizer
    raw = json.loads(rows_file.read_text().splitlines()[1])
    example = convert_row(raw, "messages", rows_file.parent)
    row = features(tok, ChatRenderer(tok, "auto"), example, ImageTokens.of(processor), "response")
    image_id = processor.image_token_id
    positions = [i for i, t in enumerate(row["input_ids"]) if t == image_id]
    assert len(positions) == 4 and positions == list(range(positions[0], positions[0] + 4))
    assert all(row["labels"][i] == IGNORE for i in positions)
    trained = [t for t in row["labels"] if t != IGNORE]
    # the assistant reply and its end-of-turn token, tokenised on their own
    assert trained == tok("it is blue<|im_end|>", add_special_tokens=False)["input_ids"]


def test_collator_loss_matches_transformers(parts, rows_file):
    import json

    from transformers import LlavaForConditionalGeneration

    processor = load_processor(str(parts["llava"]))
    tok = processor.tokenizer
    lines = rows_file.read_text().splitlines()[:3]
    examples = [convert_row(json.loads(line), "messages", rows_file.parent) for line in lines]
    renderer, tokens = ChatRenderer(tok, "auto"), ImageTokens.of(processor)
    rows = [features(tok, renderer, ex, tokens, "response") for ex in examples]
    batch = ImageChatCollator(tok.pad_token_id, processor.image_processor)(rows)
    assert batch["pixel_values"].shape == (3, 3, IMAGE_SIZE, IMAGE_SIZE)
    model = LlavaForConditionalGeneration.from_pretrained(parts["llava"])
    assert not supports_chunked_loss(model)
    total, count = lm_loss(model, batch, chunk_size=1024)
    reference = model(**batch)  # Transformers' own mean loss over the shifted labels
    assert count == int((batch["labels"][:, 1:] != IGNORE).sum())
    assert total.item() / count == pytest.approx(reference.loss.item(), rel=1e-5)
    blank = dict(batch, pixel_values=torch.zeros_like(batch["pixel_values"]))
    assert lm_loss(model, blank, chunk_size=None)[0].item() != pytest.approx(total.item(), rel=1e-6)


def test_generation_with_images_batches_and_checks_counts(parts, rows_file):
    from transformers import LlavaForConditionalGeneration

    from tunelab.decoding import generate
    from tunelab.modalities.image_chat import MODALITY

    processor = MODALITY.load_processor(str(parts["llava"]), None)
    model = LlavaForConditionalGeneration.from_pretrained(parts["llava"]).eval()
    renderer = ChatRenderer(processor.tokenizer, "auto")
    turns = [{"role": "user", "content": "<image>\nwhat"}, {"role": "assistant", "content": ""}]
    prompt = renderer.prompt(turns)
    red, blue = (str(rows_file.parent / "images" / f"{c}0.png") for c in ("red", "blue"))
    ids, inputs = generation_inputs(processor, [prompt, prompt], [[red], [blue]], False)
    assert inputs["pixel_values"].shape[0] == 2 and ids[0] == ids[1]
    assert ids[0].count(processor.tokens.token_id) == 4
    batch = generate(model, processor.tokenizer, ids, 6, inputs=inputs).texts
    alone = generate(
        model, processor.tokenizer, ids[1:], 6, inputs={"pixel_values": inputs["pixel_values"][1:]}
    )
    assert batch[1] == alone.texts[0]  # each row sees its own image in a batch
    with pytest.raises(TunelabError, match=r"2 image\(s\) for 1 image placeholder"):
        generation_inputs(processor, [prompt], [[red, red]], False)


def test_data_urls_and_unreadable_images(tmp_path):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (5, 4), (1, 2, 3)).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert image_ref(url, tmp_path) == url
    image = open_image(url)
    assert image.size == (5, 4) and image.getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(BadFile, match=r"must be data:image/\.\.\.;base64"):
        image_ref("data:image/png;base64,@@@", tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(BadFile, match=r"cannot read image .*broken.png"):
        image_ref("broken.png", tmp_path)


def test_text_only_model_is_refused(tiny_llama_dir):
    from transformers import AutoConfig

    with pytest.raises(TunelabError, match=r"\(llama\) is a text-only model"):
        check_vision_language(AutoConfig.from_pretrained(tiny_llama_dir), "tiny")
