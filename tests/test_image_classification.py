"""data.format image_classification on tiny random-init ViT / DINOv2 / MobileNetV2 models and
tiny generated PNGs: train, evaluate, predict --image, export; bad inputs; augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from image_helpers import COLOURS, save_tiny_image_model, write_image_rows, write_png
from tunelab.cli import app
from tunelab.config import load_config
from tunelab.data import prepare_data
from tunelab.errors import ConfigError, TunelabError
from tunelab.inference import load, predict
from tunelab.modalities.images import random_crop
from tunelab.train import train

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    write_image_rows(folder, per_class=6, name="train")
    write_image_rows(folder, per_class=3, name="test")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("image_models")
    kinds = ("vit", "dinov2", "mobilenet_v2")
    return {kind: save_tiny_image_model(kind, root / kind) for kind in kinds}


def config(model: Path, folder: Path, out: Path, **sections) -> dict:
    cfg = {
        "model": {"name_or_path": str(model)},
        "data": {
            "path": str(folder / "train.jsonl"),
            "test_path": str(folder / "test.jsonl"),
            "format": "image_classification",
            "split": {"train": 0.8, "validation": 0.2, "test": 0.0},
            "cache_dir": str(out / "cache"),
        },
        "train": {"max_steps": 3, "batch_size": 6, "lr": 5e-3, "eval_every": 3},
        "output": {"dir": str(out / "run"), "report": False},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


@pytest.mark.parametrize(
    ("kind", "method"),
    [("vit", "lora"), ("dinov2", "freeze"), ("dinov2", "adapter"), ("mobilenet_v2", "lora")],
)
def test_trains_evaluates_predicts_and_exports(kind, method, models, images, tmp_path):
    cfg = load_config(config(models[kind], images, tmp_path, method={"name": method}))
    result = train(cfg)
    assert result.steps == 3
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["throughput_unit"] == "examples"  # images have no input tokens
    # the test split's predictions and metrics agree with each other
    rows = [
        json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 3 * len(COLOURS)
    assert all(Path(row["image"]).is_file() for row in rows)
    accuracy = sum(row["prediction"] == row["label"] for row in rows) / len(rows)
    assert result.final_metrics["accuracy"] == pytest.approx(accuracy)
    # predict --image gives the probabilities the evaluation wrote for the same image
    first = rows[0]
    out = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), "--image", first["image"]])
    assert out.exit_code == 0, out.output
    line = json.loads(out.output.strip().splitlines()[-1])
    assert line["label"] == first["prediction"]
    for name, value in first["probabilities"].items():
        assert line["probabilities"][name] == pytest.approx(value, abs=1e-4)
    # the export loads with plain Transformers and scores the image the same way
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    export = tmp_path / "export"
    out = CliRunner().invoke(app, ["export", str(tmp_path / "run"), str(export)])
    assert out.exit_code == 0, out.output
    # an adapter export is generated code (its own model type, loaded as an image classifier)
    remote = method == "adapter"
    plain = AutoModelForImageClassification.from_pretrained(export, trust_remote_code=remote)
    plain.eval()
    pixels = AutoImageProcessor.from_pretrained(export)(
        images=[Image.open(first["image"]).convert("RGB")], return_tensors="pt"
    )
    with torch.no_grad():
        probs = plain(**pixels).logits.softmax(-1)[0]
    names = [plain.config.id2label[i] for i in range(len(probs))]
    for name, value in zip(names, probs.tolist(), strict=True):
        assert value == pytest.approx(first["probabilities"][name], abs=1e-4)
    if method == "lora":  # the run's adapter loads with PEFT alone, on a fresh base
        check_peft_adapter(models[kind], tmp_path / "run", kind, pixels["pixel_values"], probs)


def check_peft_adapter(base_dir: Path, run: Path, kind: str, pixels, expected) -> None:
    from peft import PeftModel
    from transformers import AutoModelForImageClassification

    targets = json.loads((run / "model" / "adapter_config.json").read_text())["target_modules"]
    if kind == "vit":
        assert sorted(targets) == ["q_proj", "v_proj"]
    else:  # every 1x1 convolution of the CNN
        assert targets and all("1x1" in t for t in targets)
    base = AutoModelForImageClassification.from_pretrained(
        base_dir, num_labels=len(COLOURS), ignore_mismatched_sizes=True
    )
    peft_model = PeftModel.from_pretrained(base, run / "model").eval()
    with torch.no_grad():
        probs = peft_model(pixel_values=pixels).logits.softmax(-1)[0]
    assert torch.allclose(probs, expected, atol=1e-4)


def test_label_folder_and_image_size(models, tmp_path):
    folder = tmp_path / "folders"
    for label, colour in COLOURS.items():
        for i in range(4):
            write_png(folder / label / f"{i}.png", colour, seed=i)
    (folder / "red" / "notes.txt").write_text("not an image")
    cfg = load_config(
        {
            **config(models["mobilenet_v2"], tmp_path, tmp_path),
            "data": {
                "path": str(folder),
                "format": "image_classification",
                "image_size": 24,
                "split": {"train": 1.0, "validation": 0.0, "test": 0.0},
                "cache_dir": str(tmp_path / "cache"),
            },
        }
    )
    prepared = prepare_data(cfg)
    assert prepared.label_names == sorted(COLOURS)
    assert sum(prepared.report["rows"].values()) == 12  # the .txt file is not a row
    from tunelab.models import load_processor
    from tunelab.train.rows import modal_collator

    batch = modal_collator(cfg, train=False)([prepared.splits["train"][0]])
    assert batch["pixel_values"].shape == (1, 3, 24, 24)
    assert load_processor(cfg.model, cfg.data.format, cfg.data).inner.size["height"] == 24


def test_image_bytes_in_parquet(models, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = good_rows(tmp_path)
    table = pa.table(
        {
            "picture": [(tmp_path / r["image"]).read_bytes() for r in rows],
            "label": [r["label"] for r in rows],
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet")
    cfg = bad_config(models, tmp_path / "rows.parquet", tmp_path, columns={"image": "picture"})
    prepared = prepare_data(load_config(cfg))
    stored = prepared.splits["train"]["image"]
    assert sorted(stored) == sorted(table.column("picture").to_pylist())  # bytes, not paths
    from tunelab.train.rows import modal_collator

    batch = modal_collator(load_config(cfg), train=False)(list(prepared.splits["train"])[:2])
    assert batch["pixel_values"].shape == (2, 3, 32, 32)


def test_data_prepare_cli_reports_image_rows(models, images, tmp_path):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(models["vit"], images, tmp_path)))
    out = CliRunner().invoke(app, ["data", "prepare", str(path)])
    assert out.exit_code == 0, out.output
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["format"] == "image_classification"
    assert report["labels"]["test"] == dict.fromkeys(sorted(COLOURS), 3)
    assert f"test: {len(COLOURS) * 3} rows" in out.output


def test_augmentation_only_at_training_time(models, images, tmp_path):
    cfg = load_config(
        config(models["vit"], images, tmp_path, data={"augment": {"flip": True, "crop_scale": 0.5}})
    )
    prepared = prepare_data(cfg)
    from tunelab.train.rows import modal_collator, validation_collate

    row = prepared.splits["train"][0]
    evaluation = validation_collate(cfg, 0)
    first, second = evaluation([row]), evaluation([row])
    assert torch.equal(first["pixel_values"], second["pixel_values"])
    torch.manual_seed(0)
    training = modal_collator(cfg, train=True)
    draws = [training([row])["pixel_values"] for _ in range(4)]
    assert any(not torch.equal(d, first["pixel_values"]) for d in draws)


def test_random_crop_keeps_the_area_share():
    from PIL import Image

    square = Image.new("RGB", (100, 100))
    for share in (0.0, 0.5, 1.0):  # draws[1] = 0.5: aspect ratio 1
        crop = random_crop(square, 0.5, [share, 0.5, 1.0, 1.0])
        assert crop.size[0] == crop.size[1]
        assert crop.size[0] * crop.size[1] == pytest.approx((0.5 + 0.5 * share) * 1e4, rel=0.03)
    wide = random_crop(
        Image.new("RGB", (100, 80)), 0.5, [1.0, 1.0, 0.0, 0.0]
    )  # ratio 4/3, placed top left
    assert wide.size == (100, 77)  # sqrt(8000 * 4/3) = 103 is clipped to the width 100


def write_rows(folder: Path, rows: list[dict]) -> Path:
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def bad_config(models, rows_path: Path, tmp_path: Path, **data) -> dict:
    cfg = config(models["vit"], rows_path.parent, tmp_path)
    cfg["data"] = {
        "path": str(rows_path),
        "format": "image_classification",
        "split": {"train": 1.0, "validation": 0.0, "test": 0.0},
        "cache_dir": str(tmp_path / "cache"),
        **data,
    }
    return cfg


def good_rows(folder: Path) -> list[dict]:
    rows = []
    for label, colour in COLOURS.items():
        for i in range(3):
            write_png(folder / f"{label}{i}.png", colour, seed=i)
            rows.append({"image": f"{label}{i}.png", "label": label})
    return rows


def test_missing_image_names_the_row_or_is_skipped(models, tmp_path):
    rows = [*good_rows(tmp_path), {"image": "gone.png", "label": "red"}]
    path = write_rows(tmp_path, rows)
    with pytest.raises(
        TunelabError,
        match=rf"rows\.jsonl:{len(rows)}: image file not found: .*gone\.png; .*on_bad_rows: skip",
    ):
        prepare_data(load_config(bad_config(models, path, tmp_path)))
    prepared = prepare_data(load_config(bad_config(models, path, tmp_path, on_bad_rows="skip")))
    assert prepared.report["cleaning"]["removed"]["bad_files"]["removed"] == 1
    assert sum(prepared.report["rows"].values()) == len(rows) - 1


def test_unreadable_image_and_text_instead_of_an_image(models, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows = [*good_rows(tmp_path), {"image": "broken.png", "label": "red"}]
    with pytest.raises(TunelabError, match=r"rows\.jsonl:10: cannot read image .*broken\.png"):
        prepare_data(load_config(bad_config(models, write_rows(tmp_path, rows), tmp_path)))
    rows[-1] = {"image": "a photo of a red square", "label": "red"}
    with pytest.raises(TunelabError, match=r"rows\.jsonl:10: image column holds text"):
        prepare_data(load_config(bad_config(models, write_rows(tmp_path, rows), tmp_path)))
    rows[-1] = {"text": "a red square", "label": "red"}
    with pytest.raises(TunelabError, match=r"column 'image' \(data.columns.image\) not found"):
        prepare_data(load_config(bad_config(models, write_rows(tmp_path, rows[-1:]), tmp_path)))


def test_model_modality_mismatch(models, tiny_bert_dir, tmp_path):
    path = write_rows(tmp_path, good_rows(tmp_path))
    cfg = bad_config(models, path, tmp_path)
    cfg["model"] = {"name_or_path": str(tiny_bert_dir)}
    cfg["data"]["max_length"] = 128
    cfg["eval"] = {"at_end": False}
    with pytest.raises(TunelabError, match=r"no image processor .*needs an image model"):
        train(load_config(cfg))
    from tunelab.models import load_model

    with pytest.raises(TunelabError, match=r"\(bert\) is not an image classification model"):
        load_model(load_config(cfg).model, "classification", ["a"], fmt="image_classification")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"method": {"name": "prompt_tuning"}}, "prompt_tuning .*does not apply to data.format"),
        ({"method": {"name": "prefix_tuning"}}, "prefix_tuning .*does not apply to data.format"),
        ({"train": {"packing": True}}, "train.packing does not apply to data.format"),
        ({"train": {"loss_chunk_size": 256}}, "loss_chunk_size .*does not apply"),
    ],
)
def test_refused_features_are_one_line(section, message, models, images, tmp_path):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(config(models["vit"], images, tmp_path, **section))
    assert "\n" not in str(info.value).strip()


def test_adapter_refused_on_a_cnn(models, images, tmp_path):
    cfg = load_config(config(models["mobilenet_v2"], images, tmp_path, method={"name": "adapter"}))
    with pytest.raises(TunelabError, match="method adapter needs a transformer backbone"):
        train(cfg)


@pytest.mark.parametrize("method", ["lora", "bitfit", "freeze", "full"])
def test_batch_norm_trains_as_it_evaluates(method, models, images, tmp_path):
    """Parameter-efficient methods keep the loaded BatchNorm statistics, so training must
    normalise with them too (not with each batch's own): the training forward equals the
    eval forward. full trains the statistics as well (its artifact saves them)."""
    from torch import nn

    from tunelab.train.run import build_model

    cfg = load_config(
        config(models["mobilenet_v2"], images, tmp_path, method={"name": method},
               train={"dropout": 0.0})
    )  # fmt: skip
    model = build_model(cfg, list(COLOURS))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    loaded = [norm.running_mean.clone() for norm in norms]
    pixels = torch.randn(4, 3, 16, 16) * 3 + 1  # statistics far from the loaded ones
    with torch.no_grad():
        model.eval()
        evaluated = model(pixel_values=pixels).logits
        model.train()
        trained = model(pixel_values=pixels).logits
    moved = any(not torch.equal(a, n.running_mean) for a, n in zip(loaded, norms, strict=True))
    if method == "full":
        assert moved and not torch.allclose(trained, evaluated, atol=1e-3)
    else:
        assert not moved and torch.allclose(trained, evaluated, atol=1e-6)
        assert all(norm.bias.requires_grad for norm in norms) == (method == "bitfit")


def test_example_config_on_the_real_assets_validates():
    cfg = load_config(ROOT / "examples" / "image-classification.yaml")
    assert cfg.data.format == "image_classification" and cfg.task == "classification"


@pytest.mark.integration
def test_real_mobilenet_v2_on_fashion_mnist(tmp_path):
    model = ROOT / "examples" / "models" / "mobilenet_v2"
    data = ROOT / "examples" / "data" / "generated" / "fashion_mnist_train.jsonl"
    if not (model / "config.json").is_file() or not data.is_file():
        pytest.fail("the multimodal assets are missing: run scripts/install.sh --multimodal")
    subset = tmp_path / "fashion.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()[::8]]  # every class
    for row in rows:
        row["image"] = str(data.parent / row["image"])
    subset.write_text("".join(json.dumps(row) + "\n" for row in rows))
    cfg = load_config(
        {
            "model": {"name_or_path": str(model)},
            "data": {
                "path": str(subset),
                "format": "image_classification",
                "image_size": 64,
                "split": {"train": 0.75, "validation": 0.0, "test": 0.25},
                "cache_dir": str(tmp_path / "cache"),
            },
            "method": {"name": "freeze", "freeze": {"top_n_layers": 0}},
            "train": {"max_steps": 8, "batch_size": 16, "lr": 3e-3},
            "output": {"dir": str(tmp_path / "run"), "report": False},
        }
    )
    result = train(cfg)
    loaded = load(tmp_path / "run")
    assert loaded.label_names is not None and len(loaded.label_names) == 10
    # ImageNet features + a linear head beat chance (0.1) on 30 held-out images
    assert result.final_metrics["accuracy"] > 0.2
    image = rows[0]["image"]
    assert predict(loaded, [{"image": str(image)}])[0]["label"] in loaded.label_names
