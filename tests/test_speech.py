"""The speech format end to end on a tiny random-init Whisper and tiny generated clips: train
(LoRA, full), evaluate WER before/after, ``predict --audio``, export reloads; bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jiwer
import pytest
import torch

from speech_helpers import CLIPS, speech_config, speech_data, write_clip, write_rows
from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.testing import save_tiny_whisper


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    texts = [text for _, text, *_ in CLIPS] * 50
    return save_tiny_whisper(tmp_path_factory.mktemp("tiny_whisper"), texts)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return speech_data(tmp_path_factory.mktemp("speech_data"))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _normalised_wer(rows: list[dict]) -> float:
    """Corpus WER straight from jiwer over lower-cased words, every character that is not a
    letter, digit or word-inner apostrophe a space (the documented normalisation)."""
    symbols = {r"[^\w\s']|_|(?<!\w)'|'(?!\w)": " "}
    clean = jiwer.Compose(
        [jiwer.ToLowerCase(), jiwer.SubstituteRegexes(symbols), jiwer.RemoveMultipleSpaces(),
         jiwer.Strip(), jiwer.ReduceToListOfListOfWords()]
    )  # fmt: skip
    refs = [r["reference"] for r in rows]
    hyps = [r["prediction"] or "<empty>" for r in rows]  # jiwer refuses an empty hypothesis
    return jiwer.wer(refs, hyps, reference_transform=clean, hypothesis_transform=clean)


@pytest.fixture(scope="module")
def lora_run(whisper_dir, clips, tmp_path_factory) -> Path:
    from tunelab import evaluate_run, finetune

    out = tmp_path_factory.mktemp("speech_lora") / "run"
    raw = speech_config(whisper_dir, clips, out)
    evaluate_run(raw_path(raw, out.parent))  # the base model first: eval_base/
    finetune(load_config(raw))
    return out


def raw_path(raw: dict, folder: Path) -> Path:
    import yaml

    path = folder / "speech.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_lora_trains_and_wer_is_scored_from_its_transcripts(lora_run):
    losses = [r["loss"] for r in _jsonl(lora_run / "metrics.jsonl") if r["type"] == "train"]
    assert len(losses) == 20 and losses[-1] < 0.8 * losses[0]
    base = json.loads((lora_run / "eval_base" / "eval_results.json").read_text())
    tuned = json.loads((lora_run / "eval_results.json").read_text())
    assert base["task"] == tuned["task"] == "speech_to_text"
    base_rows = _jsonl(lora_run / "eval_base" / "predictions.jsonl")
    rows = _jsonl(lora_run / "predictions.jsonl")
    assert [r["reference"] for r in rows] == [text for _, text, *_ in CLIPS]
    assert tuned["metrics"]["wer"] == pytest.approx(_normalised_wer(rows))
    assert base["metrics"]["wer"] == pytest.approx(_normalised_wer(base_rows))
    assert base["metrics"]["wer"] >= 0.9  # a random-init model: (almost) every word wrong
    summary = json.loads((lora_run / "train_summary.json").read_text())
    # audio has no input tokens: throughput counts examples (at most 20 steps x batch 6)
    assert summary["throughput_unit"] == "examples" and 20 <= summary["input_tokens"] <= 120


def test_predict_audio_prints_the_transcript_eval_wrote(lora_run, clips):
    from typer.testing import CliRunner

    from tunelab.cli import app

    wanted = {
        Path(r["audio"]).name: r["prediction"] for r in _jsonl(lora_run / "predictions.jsonl")
    }
    file = clips.parent / "audio" / "b.wav"  # 8 kHz: resampled to 16 kHz first
    result = CliRunner().invoke(app, ["predict", str(lora_run), "--audio", str(file)])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["transcript"] == wanted["b.wav"]
    missing = CliRunner().invoke(app, ["predict", str(lora_run), "--audio", "nope.wav"])
    assert isinstance(missing.exception, TunelabError)  # main() prints it in one line, exit 2
    assert str(missing.exception).startswith("--audio nope.wav: audio file not found: ")


def test_lora_exports_merged_and_the_adapter_loads_with_peft(lora_run, whisper_dir, clips):
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    from tunelab import export_run
    from tunelab.models import load_processor

    processor = load_processor(load_config(lora_run / "config.yaml").model, "speech")
    features = processor.features([str(clips.parent / "audio" / "a.wav")])
    ids = torch.tensor([[*processor.tokenizer.prefix_tokens, 10, 11]])
    out = lora_run.parent / "export"
    export_run(lora_run, out)
    merged = WhisperForConditionalGeneration.from_pretrained(out).eval()
    base = WhisperForConditionalGeneration.from_pretrained(whisper_dir)
    adapted = PeftModel.from_pretrained(base, lora_run / "model").eval()
    with torch.no_grad():
        want = adapted(input_features=features, decoder_input_ids=ids).logits
        got = merged(input_features=features, decoder_input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-4)
    with adapted.disable_adapter(), torch.no_grad():
        plain = adapted(input_features=features, decoder_input_ids=ids).logits
    assert not torch.allclose(plain, want, atol=1e-3)  # the adapter changed the model
    targets = json.loads((lora_run / "model" / "adapter_config.json").read_text())
    assert sorted(targets["target_modules"]) == ["q_proj", "v_proj"]
    assert (out / "processor_config.json").is_file() or (out / "preprocessor_config.json").is_file()


def test_full_fine_tuning_learns_and_the_run_reloads(whisper_dir, clips, tmp_path):
    import tunelab
    from tunelab import finetune

    raw = speech_config(
        whisper_dir, clips, tmp_path / "run", method={"name": "full"},
        train={"lr": 1e-2, "max_steps": 25},
    )  # fmt: skip
    result = finetune(load_config(raw))
    rows = _jsonl(tmp_path / "run" / "predictions.jsonl")
    assert result.final_metrics["wer"] == pytest.approx(_normalised_wer(rows))
    assert result.final_metrics["wer"] <= 0.25  # the six clips are memorised (random init: ~1)
    loaded = tunelab.load(tmp_path / "run")
    audio = str(clips.parent / "audio" / "d.wav")
    assert (
        tunelab.predict(loaded, [{"audio": audio}])[0]["transcript"]
        == [r["prediction"] for r in _jsonl(tmp_path / "run" / "predictions.jsonl")][3]
    )


def test_bad_rows_name_the_row_or_are_skipped_and_counted(whisper_dir, clips, tmp_path):
    from tunelab.data import prepare_data

    shutil.copytree(clips.parent / "audio", tmp_path / "audio")
    write_clip(tmp_path / "audio" / "low.wav", 400.0, 4_000)
    (tmp_path / "audio" / "broken.flac").write_bytes(b"fLaC but not really")
    rows = [{"audio": f"audio/{f}", "text": t} for f, t, *_ in CLIPS]
    bad = [
        {"audio": "audio/missing.wav", "text": "gone"},
        {"audio": "audio/low.wav", "text": "too low"},
        {"audio": "audio/broken.flac", "text": "broken"},
        {"audio": "audio/clip.mp3", "text": "other format"},
    ]
    for i, row in enumerate(bad):
        data = write_rows(tmp_path, f"bad{i}.jsonl", [*rows, row])
        raw = speech_config(whisper_dir, data, tmp_path / f"run{i}")
        with pytest.raises(TunelabError) as caught:
            prepare_data(load_config(raw))
        assert f"bad{i}.jsonl:7: " in str(caught.value)
        assert "\n" not in str(caught.value)
        assert ["audio file not found", "unsupported sample rate of 4000 Hz", "cannot read",
                "is not a wav or flac file"][i] in str(caught.value)  # fmt: skip
    data = write_rows(tmp_path, "mixed.jsonl", [*rows, *bad])
    raw = speech_config(whisper_dir, data, tmp_path / "skip", data={"on_bad_rows": "skip"})
    prepared = prepare_data(load_config(raw))
    assert len(prepared.examples["train"]) == len(CLIPS)
    skipped = prepared.report["cleaning"]["removed"]["bad_files"]
    assert skipped["removed"] == 4
    assert skipped["example"]["where"].endswith("mixed.jsonl:7")


def test_a_clip_longer_than_the_window_is_refused(whisper_dir, tmp_path):
    from tunelab.data import prepare_data

    (tmp_path / "audio").mkdir()
    write_clip(tmp_path / "audio" / "long.wav", 400.0, 16_000, seconds=3.0)  # window: 2 s
    data = write_rows(tmp_path, "long.jsonl", [{"audio": "audio/long.wav", "text": "long"}])
    raw = speech_config(whisper_dir, data, tmp_path / "run")
    with pytest.raises(
        TunelabError, match=r"long\.wav is 3\.0 s long; the model hears at most 2 s"
    ):
        prepare_data(load_config(raw))


def test_what_does_not_apply_to_speech_is_refused(whisper_dir, clips, tmp_path, tiny_llama_dir):
    from tunelab import finetune

    refused = {
        "prompt_tuning": ({"method": {"name": "prompt_tuning"}}, "does not apply to data.format speech"),
        "adapter": ({"method": {"name": "adapter"}}, "method adapter does not apply to data.format speech"),
        "packing": ({"train": {"packing": True}}, "train.packing does not apply to data.format speech"),
        "chunked": ({"train": {"loss_chunk_size": 256}}, "train.loss_chunk_size"),
        "task": ({"model": {"task": "causal_lm"}}, "model.task causal_lm does not fit data.format speech"),
    }  # fmt: skip
    for name, (sections, message) in refused.items():
        raw = speech_config(whisper_dir, clips, tmp_path / name, **sections)
        with pytest.raises(TunelabError, match=message):
            load_config(raw)
    raw = speech_config(tiny_llama_dir, clips, tmp_path / "llama", data={"max_length": 128})
    with pytest.raises(TunelabError, match=r"tiny_llama0: has no audio feature extractor"):
        finetune(load_config(raw))
    raw["model"]["tokenizer"] = str(whisper_dir)  # a Whisper processor, a Llama model
    raw["output"]["dir"] = str(tmp_path / "llama2")
    with pytest.raises(TunelabError, match=r"\(llama\) is not a speech-to-text model"):
        finetune(load_config(raw))


@pytest.mark.parametrize("method", ["freeze", "bitfit"])
def test_freezing_the_encoder_or_bitfit_train_only_their_tensors(
    whisper_dir, clips, tmp_path, method
):
    from transformers import WhisperForConditionalGeneration

    import tunelab
    from tunelab import finetune

    settings = {
        "freeze": {"name": "freeze", "freeze": {"patterns": [r"^model\.decoder\."]}},
        "bitfit": {"name": "bitfit"},
    }[method]
    validation = {"validation_path": str(clips.parent / "validation.jsonl")}
    raw = speech_config(
        whisper_dir, clips, tmp_path / "run", method=settings, data=validation,
        train={"max_steps": 2, "lr": 1e-2}, eval={"at_end": False},
    )  # fmt: skip
    finetune(load_config(raw))
    evals = [r for r in _jsonl(tmp_path / "run" / "metrics.jsonl") if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [1, 2]  # each one-batch epoch's end
    assert all(0 < r["eval_loss"] < 20 for r in evals)  # the held-out clip's transcript loss
    trained = dict(tunelab.load(tmp_path / "run").model.named_parameters())
    base = dict(WhisperForConditionalGeneration.from_pretrained(whisper_dir).named_parameters())
    changed = {name for name, p in base.items() if not torch.equal(p, trained[name])}
    if method == "freeze":
        assert changed and all(name.startswith("model.decoder.") for name in changed)
        assert any(name.startswith("model.decoder.layers.") for name in changed)
    else:
        assert changed and all(name.endswith(".bias") for name in changed)
        assert any(name.startswith("model.encoder.") for name in changed)
