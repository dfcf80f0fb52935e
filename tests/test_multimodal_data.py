"""scripts/build_multimodal_data.py: the Fashion-MNIST subset, espeak-ng speech and the
pocketsphinx recordings, checked against the Debian sources read independently here."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_multimodal_data.py"


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("build_multimodal_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def idx(path: str, header: int) -> np.ndarray:
    with gzip.open(path) as fh:
        return np.frombuffer(fh.read(), np.uint8, offset=header)


def test_fashion_mnist_subset_is_balanced_and_holds_the_source_pixels(
    build, tmp_path, monkeypatch
) -> None:
    from PIL import Image

    monkeypatch.setattr(build, "FASHION_PER_CLASS", {"train": 4, "test": 2})
    build.build_fashion_mnist(tmp_path)
    train, test = (
        rows(tmp_path / "fashion_mnist_train.jsonl"),
        rows(tmp_path / "fashion_mnist_test.jsonl"),
    )
    assert Counter(r["label"] for r in train) == dict.fromkeys(build.FASHION_CLASSES, 4)
    assert Counter(r["label"] for r in test) == dict.fromkeys(build.FASHION_CLASSES, 2)
    source = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    images = idx(source, 16).reshape(-1, 28, 28)
    labels = idx(source.replace("images-idx3", "labels-idx1"), 8)
    pixels = np.asarray(Image.open(tmp_path / test[0]["image"]))
    matches = [i for i in range(len(images)) if np.array_equal(images[i], pixels)]
    assert matches and build.FASHION_CLASSES[labels[matches[0]]] == test[0]["label"]
    first = (tmp_path / "fashion_mnist_train.jsonl").read_text()
    build.build_fashion_mnist(tmp_path / "again")
    assert (tmp_path / "again" / "fashion_mnist_train.jsonl").read_text() == first  # seeded


def test_speech_sentences_hold_out_test_sentences(build) -> None:
    splits = build.speech_splits()
    assert [len(splits[s]) for s in ("train", "test")] == [150, 40]
    assert not {t.lower() for t in splits["train"]} & {t.lower() for t in splits["test"]}
    headlines = set(build.bbc_headlines())
    assert sum(t in headlines for t in splits["test"]) == 20  # half BBC, half chatterbot
    assert all(3 <= len(t.split()) <= 12 for t in splits["train"] + splits["test"])


def test_speech_clips_are_16k_mono_of_their_text(build, tmp_path, monkeypatch) -> None:
    import soundfile

    monkeypatch.setattr(build, "SPEECH_PER_SOURCE", {"train": 1, "test": 1})
    build.build_speech(tmp_path)
    test = rows(tmp_path / "speech_test.jsonl")
    assert len(test) == 2 and len(rows(tmp_path / "speech_train.jsonl")) == 2
    info = soundfile.info(tmp_path / test[0]["audio"])
    assert (info.samplerate, info.channels) == (16000, 1)
    words = len(test[0]["text"].split())
    assert 0.15 * words < info.duration < 1.0 * words + 1  # espeak-ng speaks ~2-3 words/s


def test_pocketsphinx_rows_carry_the_package_transcripts(build, tmp_path) -> None:
    import soundfile

    build.build_pocketsphinx(tmp_path)
    found = {Path(r["audio"]).name: r["text"] for r in rows(tmp_path / "pocketsphinx.jsonl")}
    assert found["goforward.wav"] == "go forward ten meters"
    assert found["cards_001.wav"] == "ten of clubs"
    assert (
        found["librivox_sense_and_sensibility_01_austen_64kb-0880.wav"]
        == "he was not an ill disposed young man"
    )
    assert len(found) == 11
    raw = np.frombuffer(Path("/usr/share/pocketsphinx/test/data/goforward.raw").read_bytes(), "<i2")
    audio, rate = soundfile.read(tmp_path / "speech/pocketsphinx/goforward.wav", dtype="int16")
    assert rate == 16000 and np.array_equal(audio, raw)


def test_existing_outputs_are_skipped(build, tmp_path, capsys) -> None:
    (tmp_path / "pocketsphinx.jsonl").write_text("mine\n")
    build.main(["pocketsphinx", "--out", str(tmp_path)])
    assert (tmp_path / "pocketsphinx.jsonl").read_text() == "mine\n"
    assert "exist" in capsys.readouterr().out
