"""The real converted models (scripts/install.sh --multimodal) give known outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from multimodal_assets import data_file, model_dir

pytestmark = pytest.mark.integration


def test_whisper_transcribes_pocketsphinx_goforward() -> None:
    import soundfile
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    path = model_dir("whisper_tiny_en")
    processor = WhisperProcessor.from_pretrained(path)
    model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    audio, rate = soundfile.read(data_file("speech/pocketsphinx/goforward.wav"), dtype="float32")
    features = processor(audio, sampling_rate=rate, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(features, max_new_tokens=20)
    assert processor.batch_decode(ids, skip_special_tokens=True) == [" Go forward 10 meters."]


def test_mobilenet_names_opencv_photos() -> None:
    from PIL import Image
    from transformers import AutoImageProcessor, MobileNetV2ForImageClassification

    path = model_dir("mobilenet_v2")
    processor = AutoImageProcessor.from_pretrained(path)
    model = MobileNetV2ForImageClassification.from_pretrained(path).eval()
    names = ("orange", "baboon", "messi5")
    images = [Image.open(data_file(f"photos/{n}.jpg")).convert("RGB") for n in names]
    with torch.no_grad():
        probs = model(**processor(images, return_tensors="pt")).logits.softmax(-1)
    top = [model.config.id2label[int(i)] for i in probs.argmax(-1)]
    assert top == ["orange", "baboon", "soccer ball"]
    assert probs.max(-1).values.min() > 0.5


def test_dinov2_features_find_same_class_neighbours() -> None:
    """Leave-one-out 1-NN on 60 Fashion-MNIST images (6 per class) at 112 px: chance is 0.1 and
    a random-init Dinov2 of this config scored 0.38 when measured; the real backbone 0.57."""
    from PIL import Image
    from transformers import AutoImageProcessor, Dinov2Model

    path = model_dir("dinov2_small")
    rows = [json.loads(line) for line in data_file("fashion_mnist_train.jsonl").open()]
    picked = [
        r
        for label in sorted({r["label"] for r in rows})
        for r in [x for x in rows if x["label"] == label][:6]
    ]
    images = [Image.open(data_file(r["image"])).convert("RGB") for r in picked]
    processor = AutoImageProcessor.from_pretrained(path)
    x = processor(
        images,
        size={"shortest_edge": 112},
        crop_size={"height": 112, "width": 112},
        return_tensors="pt",
    )
    with torch.no_grad():
        cls = Dinov2Model.from_pretrained(path).eval()(**x).last_hidden_state[:, 0]
    cls = torch.nn.functional.normalize(cls, dim=-1)
    similarity = cls @ cls.T
    similarity.fill_diagonal_(-2.0)
    labels = np.array([r["label"] for r in picked])
    accuracy = float((labels[similarity.argmax(1).numpy()] == labels).mean())
    assert accuracy >= 0.5, accuracy
