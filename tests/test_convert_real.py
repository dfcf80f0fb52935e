"""The real converted models (scripts/install.sh --multimodal) give known outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multimodal_assets import data_file, downloaded, model_dir

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


def test_dinov2_equals_the_onnx_source_at_both_ends(tmp_path) -> None:
    """The source ONNX graph's first layer (embeddings + position interpolation + block 0)
    and last layer (block 11 + final norm), run by onnx's reference evaluator, against the
    converted model's hidden states on a real photo."""
    from onnx.reference import ReferenceEvaluator
    from onnx.utils import extract_model
    from PIL import Image
    from transformers import AutoImageProcessor, Dinov2Model

    from tunelab.convert import dinov2

    path, source = model_dir("dinov2_small"), str(downloaded(dinov2.WEIGHTS))
    photo = Image.open(data_file("photos/orange.jpg"))
    x = AutoImageProcessor.from_pretrained(path)(photo, return_tensors="pt").pixel_values
    with torch.no_grad():
        out = Dinov2Model.from_pretrained(path).eval()(pixel_values=x, output_hidden_states=True)
    first, last = str(tmp_path / "first.onnx"), str(tmp_path / "last.onnx")
    block10 = "/backbone/encoder/layer.10/Add_1_output_0"
    extract_model(source, first, ["input_image"], ["/backbone/encoder/layer.0/Add_1_output_0"])
    extract_model(source, last, [block10], ["/backbone/layernorm/Add_1_output_0"])
    (start,) = ReferenceEvaluator(first).run(None, {"input_image": x.numpy()})
    (end,) = ReferenceEvaluator(last).run(None, {block10: out.hidden_states[11].numpy()})
    np.testing.assert_allclose(start, out.hidden_states[1].numpy(), atol=1e-4)
    np.testing.assert_allclose(end, out.last_hidden_state.numpy(), atol=1e-4)
