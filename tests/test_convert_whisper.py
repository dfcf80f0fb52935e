"""The CTranslate2 reader and the Whisper converter, on a tiny Whisper written here in
CTranslate2's layout.

``write_ct2`` below writes the model file format (binary version 6) directly with
``struct``: fused q/k/v and k/v projections (zero k biases), float16 weights, int scalars
and the ``decoder/projection/weight`` alias, as faster-whisper's converter does. Converting
it must give back the tiny model exactly.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from tunelab.convert import ct2, whisper
from tunelab.errors import TunelabError

SPECIAL = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|startofprev|>",
    "<|notimestamps|>",
]
DTYPE_IDS = {
    np.dtype(np.float32): 0,
    np.dtype(np.int8): 1,
    np.dtype(np.int16): 2,
    np.dtype(np.float16): 4,
}


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(
    path, variables: dict[str, np.ndarray], aliases: dict[str, str], version: int = 6
) -> None:
    out = [
        struct.pack("<I", version),
        _string("WhisperSpec"),
        struct.pack("<II", 3, len(variables)),
    ]
    for name, array in variables.items():
        out += [
            _string(name),
            struct.pack("<B", array.ndim),
            struct.pack(f"<{array.ndim}I", *array.shape),
        ]
        out += [struct.pack("<BI", DTYPE_IDS[array.dtype], array.nbytes), array.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    out += [_string(alias) + _string(target) for alias, target in aliases.items()]
    path.write_bytes(b"".join(out))


def tokenizer_file(path) -> int:
    """A byte-level BPE tokenizer.json with Whisper's special tokens; returns its size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(alphabet))}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL)
    tok.save(str(path))
    return tok.get_vocab_size()


def tiny_whisper(vocab: int, special_ids: dict[str, int]):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=vocab, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=96,
        max_source_positions=8, max_target_positions=24,
        decoder_start_token_id=special_ids["<|startoftranscript|>"],
        pad_token_id=special_ids["<|endoftext|>"], bos_token_id=special_ids["<|endoftext|>"],
        eos_token_id=special_ids["<|endoftext|>"],
    )  # fmt: skip
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # float16-exact weights (the file stores float16), norms off 1/0
        for param in model.parameters():
            param.copy_((param + torch.randn_like(param) * 0.02).half().float())
    return model


def ct2_variables(model) -> dict[str, np.ndarray]:
    sd = {k: v.numpy().astype(np.float16) for k, v in model.state_dict().items()}
    var: dict[str, np.ndarray] = {}

    def lin(dst, src, bias=True):
        var[f"{dst}/weight"] = sd[f"{src}.weight"]
        if bias:
            var[f"{dst}/bias"] = sd[f"{src}.bias"]

    def norm(dst, src):
        var[f"{dst}/gamma"], var[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    for part, n in (("encoder", 2), ("decoder", 2)):
        for i in range(n):
            s, t = f"{part}/layer_{i}", f"model.{part}.layers.{i}"
            a = f"{t}.self_attn"
            zero = np.zeros_like(sd[f"{a}.q_proj.bias"])
            var[f"{s}/self_attention/linear_0/weight"] = np.concatenate(
                [sd[f"{a}.{p}_proj.weight"] for p in "qkv"]
            )
            var[f"{s}/self_attention/linear_0/bias"] = np.concatenate(
                [sd[f"{a}.q_proj.bias"], zero, sd[f"{a}.v_proj.bias"]]
            )
            lin(f"{s}/self_attention/linear_1", f"{a}.out_proj")
            norm(f"{s}/self_attention/layer_norm", f"{t}.self_attn_layer_norm")
            lin(f"{s}/ffn/linear_0", f"{t}.fc1")
            lin(f"{s}/ffn/linear_1", f"{t}.fc2")
            norm(f"{s}/ffn/layer_norm", f"{t}.final_layer_norm")
            if part == "decoder":
                c = f"{t}.encoder_attn"
                lin(f"{s}/attention/linear_0", f"{c}.q_proj")
                var[f"{s}/attention/linear_1/weight"] = np.concatenate(
                    [sd[f"{c}.k_proj.weight"], sd[f"{c}.v_proj.weight"]]
                )
                var[f"{s}/attention/linear_1/bias"] = np.concatenate([zero, sd[f"{c}.v_proj.bias"]])
                lin(f"{s}/attention/linear_2", f"{c}.out_proj")
                norm(f"{s}/attention/layer_norm", f"{t}.encoder_attn_layer_norm")
        norm(f"{part}/layer_norm", f"model.{part}.layer_norm")
        var[f"{part}/position_encodings/encodings"] = sd[f"model.{part}.embed_positions.weight"]
        var[f"{part}/num_heads"] = np.array(2, np.int16)
    for conv in ("conv1", "conv2"):
        lin(f"encoder/{conv}", f"model.encoder.{conv}")
    var["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    var["decoder/scale_embeddings"] = np.array(0, np.int8)
    return var


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from tokenizers import Tokenizer

    root = tmp_path_factory.mktemp("faster_whisper")
    vocab = tokenizer_file(root / "tokenizer.json")
    ids = {t: Tokenizer.from_file(str(root / "tokenizer.json")).token_to_id(t) for t in SPECIAL}
    model = tiny_whisper(vocab, ids)
    write_ct2(
        root / "model.bin",
        ct2_variables(model),
        {"decoder/projection/weight": "decoder/embeddings/weight"},
    )
    config = {
        "alignment_heads": [[1, 0]],
        "suppress_ids": [5, 7],
        "suppress_ids_begin": [ids["<|endoftext|>"]],
    }
    (root / "config.json").write_text(json.dumps(config))
    return root, model, ids


def test_reader_reads_variables_scalars_and_aliases(source) -> None:
    root, model, _ = source
    read = ct2.read(root / "model.bin")
    assert (read.spec, read.revision) == ("WhisperSpec", 3)
    assert (
        read.variables["decoder/projection/weight"] is read.variables["decoder/embeddings/weight"]
    )
    assert int(read.variables["encoder/num_heads"]) == 2
    conv = model.state_dict()["model.encoder.conv1.weight"].numpy()
    assert read.variables["encoder/conv1/weight"].dtype == np.float16
    np.testing.assert_array_equal(read.variables["encoder/conv1/weight"].astype(np.float32), conv)


def test_converted_whisper_equals_the_source_model(source, tmp_path) -> None:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    root, tiny, ids = source
    out = whisper.convert(root, tmp_path / "whisper")
    model = WhisperForConditionalGeneration.from_pretrained(out).eval()
    expected = tiny.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    features = torch.randn(1, 80, 16)
    decoder_ids = torch.tensor([[ids["<|startoftranscript|>"], ids["<|notimestamps|>"], 70, 71]])
    with torch.no_grad():
        got = model(input_features=features, decoder_input_ids=decoder_ids).logits
        want = tiny(input_features=features, decoder_input_ids=decoder_ids).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    gen = model.generation_config
    assert gen.decoder_start_token_id == ids["<|startoftranscript|>"]
    assert gen.no_timestamps_token_id == ids["<|notimestamps|>"]
    assert gen.is_multilingual is False and gen.suppress_tokens == [5, 7]
    assert gen.alignment_heads == [[1, 0]]
    processor = WhisperProcessor.from_pretrained(out)
    assert processor.feature_extractor.sampling_rate == 16000
    assert (
        processor.tokenizer.decode(
            processor.tokenizer("go forward", add_special_tokens=False).input_ids
        )
        == "go forward"
    )


def test_bad_ct2_files_are_one_line_errors(source, tmp_path) -> None:
    root, _, _ = source
    data = (root / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    (tmp_path / "v1.bin").write_bytes(struct.pack("<I", 1) + data[4:])
    for name, message in (("cut.bin", "past the end"), ("v1.bin", "binary version 1")):
        with pytest.raises(TunelabError, match=message) as bad:
            ct2.read(tmp_path / name)
        assert "\n" not in str(bad.value)
    with pytest.raises(TunelabError, match=r"tokenizer not found: .*install\.sh --multimodal"):
        whisper.convert(tmp_path / "absent", tmp_path / "out")
    assert not (tmp_path / "out").exists()
