"""Audio reading for the speech format, and the word error rate: against numbers worked out
by hand or from the signal itself (a tone's frequency, a file's length)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from tunelab.evaluate.wer import WerScorer, edit_counts, normalize_transcript
from tunelab.modalities.audio import BadAudio, audio_source, read_audio


def _tone(path: Path, rate: int, seconds: float, freq: float, channels: int = 1) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    data = np.stack([wave, 0.5 * wave], axis=1) if channels == 2 else wave
    soundfile.write(str(path), data.astype("float32"), rate)
    return path


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def test_resamples_to_the_model_rate_and_keeps_the_pitch(tmp_path):
    path = _tone(tmp_path / "a.wav", 8_000, 0.5, 1_000.0)
    out = read_audio(str(path), 16_000)
    assert out.dtype == np.float32
    assert len(out) == 8_000  # 0.5 s at 16 kHz
    assert _peak_hz(out, 16_000) == pytest.approx(1_000.0, abs=2.0)
    down = read_audio(str(_tone(tmp_path / "b.flac", 44_100, 0.5, 440.0)), 16_000)
    assert len(down) == 8_000
    assert _peak_hz(down, 16_000) == pytest.approx(440.0, abs=2.0)


def test_stereo_becomes_the_mean_of_its_channels(tmp_path):
    path = _tone(tmp_path / "s.wav", 16_000, 0.25, 500.0, channels=2)
    left = 0.5 * np.sin(2 * np.pi * 500.0 * np.arange(4_000) / 16_000)
    out = read_audio(str(path), 16_000)
    assert out.ndim == 1
    np.testing.assert_allclose(out, 0.75 * left, atol=1e-4)  # (1 + 0.5) / 2 of the left channel


def test_bad_audio_says_what_and_how_to_fix_it(tmp_path):
    with pytest.raises(BadAudio, match=r"^audio file not found: .*missing\.wav$"):
        audio_source("missing.wav", tmp_path)
    with pytest.raises(BadAudio, match=r"^audio 'clip\.mp4' is not a wav or flac file"):
        audio_source("clip.mp4", tmp_path)
    with pytest.raises(BadAudio, match=r"^audio must be the path of a wav or flac file, not None"):
        audio_source(None, tmp_path)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav file at all")
    with pytest.raises(BadAudio, match=r"^cannot read .*junk\.wav as wav/flac"):
        read_audio(audio_source("junk.wav", tmp_path), 16_000)
    slow = _tone(tmp_path / "slow.wav", 4_000, 0.5, 300.0)
    with pytest.raises(BadAudio, match=r"slow\.wav has an unsupported sample rate of 4000 Hz"):
        read_audio(str(slow), 16_000)
    long = _tone(tmp_path / "long.wav", 8_000, 3.0, 300.0)
    with pytest.raises(BadAudio, match=r"long\.wav is 3\.0 s long; the model hears at most 2 s"):
        read_audio(str(long), 16_000, 2.0)


def test_wer_counts_edits_over_reference_words():
    assert normalize_transcript("Go forward, TEN metres!") == "go forward ten metres"
    assert normalize_transcript("it's 'fine'") == "it's fine"
    # reference 4 words; hypothesis: 1 substitution (10 for ten) -> 1/4
    assert edit_counts("go forward ten meters", "Go forward 10 meters.")[:2] == (1, 4)
    # "the cat sat" vs "the cat sat down": 1 insertion over 3 words
    assert edit_counts("the cat sat", "the cat sat down")[:2] == (1, 3)
    # empty hypothesis: every word deleted
    assert edit_counts("one two", "")[:2] == (2, 2)
    scorer = WerScorer()
    rows = scorer.update(
        ["go forward 10 meters", "the cat sat down", ""],
        [{"reference": r} for r in ("go forward ten meters", "the cat sat", "one two")],
    )
    assert [r["wer"] for r in rows] == [0.25, pytest.approx(1 / 3), 1.0]
    # corpus: (1 + 1 + 2) edits / (4 + 3 + 2) words
    assert scorer.compute()["wer"] == pytest.approx(4 / 9)
    # characters: "ten" -> "10" is 3 edits (2 substitutions + 1 deletion) over 21 characters
    single = WerScorer()
    single.update(["go forward 10 meters"], [{"reference": "go forward ten meters"}])
    assert single.compute()["cer"] == pytest.approx(3 / 21)
