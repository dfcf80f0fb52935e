"""image_chat end to end on a tiny composed LLaVA: examples/image-chat.yaml's two-stage recipe
(projector, then LoRA on the language model), predict --image, serve with a data URL, and the
bad inputs."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file

import tunelab
from image_chat_fixtures import IMAGE_SIZE, chat_row, save_tiny_dinov2, write_square_rows
from tunelab.config import load_config
from tunelab.errors import ConfigError, TunelabError
from tunelab.modalities.image_chat import MODALITY

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "image-chat.yaml"
QUESTION = "what colour is it"
LM_LINEARS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    from tunelab.convert.llava import compose

    root = tmp_path_factory.mktemp("llava_run")
    return compose(save_tiny_dinov2(root / "dinov2"), tiny_llama_dir, root / "llava", IMAGE_SIZE)


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> Path:
    return write_square_rows(tmp_path_factory.mktemp("squares_run"), copies=4)


def raw_config(model: Path, data: Path, out: Path, **extra: Any) -> dict[str, Any]:
    """examples/image-chat.yaml (stage ``align``: the projector only; stage ``lora``: LoRA on
    all-linear, which the modality narrows to the language model) on ``model`` and ``data``,
    sized down: two steps a stage, r=4, fp32."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["model"] = {"name_or_path": str(model)}
    raw["data"].pop("test_path")
    raw["data"] |= {
        "path": str(data),
        "max_length": 64,
        "cache_dir": str(out.parent / "cache"),
        "split": {"train": 0.75, "validation": 0.0, "test": 0.25, "seed": 0},
    }
    raw["method"]["lora"] = {"r": 4, "alpha": 8}
    raw["train"] = {"batch_size": 3, "report_to": []}
    for stage in raw["stages"]:
        stage["train"] = {"max_steps": 2, "lr": 1e-2}
    raw["eval"] = {"split": "test", "metrics": ["exact_match", "perplexity"]}
    raw["output"] = {"dir": str(out)}
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


@pytest.fixture(scope="module")
def run(tmp_path_factory, llava_dir, rows) -> Path:
    out = tmp_path_factory.mktemp("vlm") / "run"
    tunelab.finetune(load_config(raw_config(llava_dir, rows, out)), console=Console(quiet=True))
    return out


def test_stage_one_trains_only_the_projector(run, llava_dir):
    before = load_file(llava_dir / "model.safetensors")
    after = load_file(run / "handoff" / "1-align" / "model.safetensors")
    assert set(before) == set(after)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    projector = {name for name in before if "multi_modal_projector" in name}
    assert changed == projector and len(projector) == 4


def test_throughput_counts_tokens_images_included(run):
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["throughput_unit"] == "tokens"  # text and image tokens of the LM's input
    assert summary["input_tokens"] > 2 * 2 * 3  # more than one token an example


def test_stage_two_puts_lora_on_the_language_model_only(run):
    adapter = json.loads((run / "model" / "adapter_config.json").read_text())
    targets = {name.rsplit(".", 1)[-1] for name in adapter["target_modules"]}
    assert targets == LM_LINEARS
    weights = load_file(run / "model" / "adapter_model.safetensors")
    assert weights and all(".language_model." in name for name in weights)
    results = json.loads((run / "eval_results.json").read_text())["metrics"]
    assert {"exact_match", "perplexity"} <= set(results)


def image_data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def reference_answer(run: Path, image: Path, question: str, new_tokens: int) -> str:
    """Greedy answer by Transformers alone: its LlavaProcessor expands the image token, the
    adapter is PEFT's, the prompt the saved chat template's."""
    from peft import PeftModel
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(run / "model")
    base = LlavaForConditionalGeneration.from_pretrained(run / "handoff" / "1-align")
    model = PeftModel.from_pretrained(base, run / "model").eval()
    turn = [{"role": "user", "content": f"<image>\n{question}"}]
    text = processor.tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
    enc = processor(images=Image.open(image).convert("RGB"), text=text, return_tensors="pt")
    end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = [processor.tokenizer.eos_token_id, end]
    out = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, eos_token_id=eos)
    new = out[0, enc["input_ids"].shape[1] :].tolist()
    new = new[: next((i for i, t in enumerate(new) if t in eos), len(new))]
    return processor.tokenizer.decode(new, skip_special_tokens=True).strip()


def test_predict_image_matches_transformers(run, rows, capsys):
    from tunelab.inference import predict_cli

    image = rows.parent / "images" / "blue1.png"
    results = predict_cli(run, QUESTION, media={"image": str(image)})
    assert results[0]["generated"] == reference_answer(run, image, QUESTION, 64)


def test_serve_reads_a_data_url_image(run, rows, tiny_llama_dir, tmp_path):
    from fastapi.testclient import TestClient

    from tunelab.inference import predict_cli

    image = rows.parent / "images" / "green2.png"
    expected = predict_cli(run, QUESTION, media={"image": str(image)})[0]["generated"]
    parts = [
        {"type": "image_url", "image_url": {"url": image_data_url(image)}},
        {"type": "text", "text": QUESTION},
    ]
    body = {"model": "run", "messages": [{"role": "user", "content": parts}], "temperature": 0}
    with TestClient(tunelab.build_app(run, name="run")) as client:
        answer = client.post("/v1/chat/completions", json={**body, "max_tokens": 64})
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == expected
        parts[0]["image_url"]["url"] = "https://example.com/cat.png"
        refused = client.post("/v1/chat/completions", json=body)
        assert refused.status_code == 400 and "data:image" in refused.json()["error"]["message"]
        parts[0]["image_url"]["url"] = "data:image/png;base64,AAAA"  # decodes, not an image
        refused = client.post("/v1/chat/completions", json=body)
        message = refused.json()["error"]["message"]
        assert refused.status_code == 400 and "cannot read image image_url 1" in message
        assert "data cache" not in message  # not the training data's advice
        assert client.post("/v1/chat/completions", json={**body, "messages": [
            {"role": "user", "content": [parts[1]]}]}).status_code == 200  # fmt: skip


def test_a_text_model_refuses_image_parts(tiny_llama_dir, tmp_path, rows):
    from fastapi.testclient import TestClient

    from serve_helpers import make_run

    text_run = make_run(tiny_llama_dir, tmp_path / "text", "causal_lm", {"name": "lora"}, 0)
    parts = [
        {
            "type": "image_url",
            "image_url": {"url": image_data_url(next(rows.parent.glob("images/*.png")))},
        }
    ]
    body = {"model": "t", "messages": [{"role": "user", "content": parts}]}
    with TestClient(tunelab.build_app(text_run, name="t")) as client:
        answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 400
    assert "reads text only" in answer.json()["error"]["message"]


def test_missing_image_names_the_row_or_is_skipped(tmp_path, llava_dir, rows):
    data = tmp_path / "rows.jsonl"
    lines = rows.read_text().splitlines()
    missing = json.dumps(chat_row("images/gone.png", QUESTION, "it is red"))
    data.write_text("\n".join([*lines[:2], missing, *lines[2:]]) + "\n")
    (tmp_path / "images").symlink_to(rows.parent / "images")
    raw = raw_config(llava_dir, data, tmp_path / "run")
    with pytest.raises(TunelabError, match=rf"{data}:3: image file not found: .*gone.png"):
        tunelab.prepare_data(load_config(raw))
    raw["data"]["on_bad_rows"] = "skip"
    prepared = tunelab.prepare_data(load_config(raw))
    assert prepared.report["cleaning"]["removed"]["bad_files"]["removed"] == 1
    assert sum(prepared.report["rows"].values()) == len(lines)


def test_a_row_without_an_image_is_invalid(tmp_path, llava_dir, rows):
    data = tmp_path / "rows.jsonl"
    text_only = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    }
    data.write_text(rows.read_text() + json.dumps(text_only) + "\n")
    (tmp_path / "images").symlink_to(rows.parent / "images")
    raw = raw_config(llava_dir, data, tmp_path / "run")
    prepared = tunelab.prepare_data(load_config(raw))  # data.clean.drop_invalid: true (default)
    invalid = prepared.report["cleaning"]["removed"]["invalid"]
    assert invalid["removed"] == 1 and invalid["example"]["reason"].startswith("no image part")
    raw["data"]["clean"] = {"drop_invalid": False}
    with pytest.raises(TunelabError, match=r"rows.jsonl:13: invalid row \(no image part"):
        tunelab.prepare_data(load_config(raw))


def test_a_text_only_model_with_image_chat_is_refused(tmp_path, tiny_llama_dir, rows):
    raw = raw_config(tiny_llama_dir, rows, tmp_path / "run")
    with pytest.raises(TunelabError, match="image_chat needs a vision-language model"):
        tunelab.finetune(load_config(raw), console=Console(quiet=True))


def test_packing_and_virtual_tokens_are_refused(tmp_path, llava_dir, rows):
    with pytest.raises(
        ConfigError, match=r"train\.packing does not apply to data\.format image_chat"
    ):
        load_config(raw_config(llava_dir, rows, tmp_path / "a", train={"packing": True}))
    with pytest.raises(
        ConfigError, match=r"train\.loss_chunk_size .* does not apply to data\.format image_chat"
    ):
        load_config(raw_config(llava_dir, rows, tmp_path / "c", train={"loss_chunk_size": 256}))
    raw = raw_config(llava_dir, rows, tmp_path / "b")
    raw["method"] = {"name": "prompt_tuning"}
    raw.pop("stages")
    with pytest.raises(ConfigError, match="virtual tokens"):
        load_config(raw)


@pytest.mark.integration
def test_real_composed_model_reads_fashion_images(tmp_path):
    """The shipped DINOv2-S + SmolLM2 composition through tunelab's data and model paths: 64
    image tokens per 112 px image, a finite loss that depends on the image, generation."""
    from multimodal_assets import DATA as data
    from multimodal_assets import data_file
    from multimodal_assets import model_dir as asset_dir
    from tunelab.decoding import generate
    from tunelab.models import load_model, load_processor
    from tunelab.train.loss import lm_loss

    model_dir = asset_dir("llava_dinov2_smollm2")
    data_file("image_chat_test.jsonl")
    raw = raw_config(model_dir, data / "image_chat_test.jsonl", tmp_path / "run")
    raw["data"] |= {"max_samples": 8, "max_length": 160}
    cfg = load_config(raw)
    processor = load_processor(cfg.model, "image_chat")
    assert processor.tokens.per_image == 64
    prepared = tunelab.prepare_data(cfg, processor)
    rows = [prepared.splits["train"][i] for i in range(2)]
    model = load_model(cfg.model, cfg.task, fmt="image_chat").eval()
    batch = MODALITY.collator(processor, cfg.data, train=False)(rows)
    with torch.no_grad():
        loss, count = lm_loss(model, batch, chunk_size=None)
        blank = dict(batch, pixel_values=torch.zeros_like(batch["pixel_values"]))
        other, _ = lm_loss(model, blank, chunk_size=None)
    assert count > 0 and torch.isfinite(loss) and not torch.isclose(loss, other)
    examples = prepared.examples["train"][:2]
    prompts = [
        processor.tokenizer.apply_chat_template(
            e["messages"][:1], tokenize=False, add_generation_prompt=True
        )
        for e in examples
    ]
    ids, inputs = MODALITY.generation_inputs(processor, prompts, examples)
    texts = generate(model, processor.tokenizer, ids, 4, inputs=inputs).texts
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
