"""The MobileNetV2 converter against an independent torchvision-layout MobileNetV2.

``TorchvisionMobileNetV2`` (tests/torchvision_mobilenet.py) re-implements torchvision's module tree (so its
``state_dict`` has torchvision's key names); random weights and batch-norm statistics are
saved as a ``.pth``, converted, and the Transformers model must compute the same logits.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchvision_mobilenet import TorchvisionMobileNetV2
from tunelab.convert import mobilenet
from tunelab.errors import TunelabError


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[TorchvisionMobileNetV2, str]:
    torch.manual_seed(0)
    net = TorchvisionMobileNetV2()
    for module in net.modules():  # non-trivial statistics, so a swapped buffer shows
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    path = tmp_path_factory.mktemp("mnv2") / "mobilenet_v2.pth"
    torch.save(net.state_dict(), path)
    return net.eval(), str(path)


def test_converted_mobilenet_computes_torchvision_logits(source, tmp_path) -> None:
    from transformers import AutoImageProcessor, MobileNetV2ForImageClassification

    net, pth = source
    labels = tmp_path / "classes.txt"
    labels.write_text("".join(f"class {i}, alias\n" for i in range(1000)))
    out = mobilenet.convert(pth, tmp_path / "model", labels=labels)
    model = MobileNetV2ForImageClassification.from_pretrained(out).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected, got = net(x), model(pixel_values=x).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert model.config.id2label[7] == "class 7, alias"
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    processor = AutoImageProcessor.from_pretrained(out)
    assert processor.crop_size == {"height": 224, "width": 224}


def test_labels_default_to_indices_and_a_short_list_is_refused(source, tmp_path) -> None:
    from transformers import AutoConfig

    out = mobilenet.convert(source[1], tmp_path / "m", labels=tmp_path / "absent.txt")
    assert AutoConfig.from_pretrained(out).id2label[285] == "285"
    short = tmp_path / "short.txt"
    short.write_text("tench\ngoldfish\n")
    with pytest.raises(TunelabError, match="2 labels, expected 1000"):
        mobilenet.convert(source[1], tmp_path / "m2", labels=short)
    assert not (tmp_path / "m2").exists()


def test_missing_corrupt_and_foreign_sources_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(TunelabError, match=r"install\.sh --multimodal") as missing:
        mobilenet.convert(tmp_path / "none.pth", tmp_path / "out")
    corrupt = tmp_path / "bad.pth"
    corrupt.write_bytes(b"not a pickle")
    with pytest.raises(TunelabError, match="unreadable or corrupt") as bad:
        mobilenet.convert(corrupt, tmp_path / "out")
    foreign = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(TunelabError, match=r"no features\.0\.0\.weight"):
        mobilenet.convert(foreign, tmp_path / "out")
    assert "\n" not in str(missing.value) + str(bad.value)
    assert not (tmp_path / "out").exists()
