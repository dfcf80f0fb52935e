"""Reading audio for the ``speech`` format: wav/flac files -> mono float32 at the feature
extractor's rate, with one-line errors (the data pipeline prefixes the row).

soundfile (libsndfile) decodes; channels are averaged to mono; a different sample rate is
resampled with a polyphase filter (``scipy.signal.resample_poly``).
"""

from __future__ import annotations

from math import gcd
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.errors import first_line

FORMATS = (".wav", ".flac")
MIN_RATE, MAX_RATE = 8_000, 192_000  # below 8 kHz there is no speech band left to resample


class BadAudio(ValueError):
    """An audio value that cannot be used (missing, unreadable, unsupported rate or length);
    the message says what and how to fix it."""


def audio_source(value: Any, base_dir: Path) -> str:
    """The audio file's absolute path (a relative path is relative to the data file's folder;
    a ``{"path": ...}`` struct is read too); :class:`BadAudio` for a missing file, another
    format or a value that is not a path."""
    if isinstance(value, dict) and isinstance(value.get("path"), str):
        value = value["path"]
    if not isinstance(value, str) or not value.strip():
        raise BadAudio(f"audio must be the path of a wav or flac file, not {value!r}")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if path.suffix.lower() not in FORMATS:
        raise BadAudio(
            f"audio {value!r} is not a wav or flac file; convert it (e.g. ffmpeg -i "
            f"{path.name} {path.stem}.wav)"
        )
    if not path.is_file():
        raise BadAudio(f"audio file not found: {path}")
    return str(path)


def audio_seconds(source: str) -> float:
    """The file's duration from its header; :class:`BadAudio` when it is not wav/flac audio,
    holds no samples, or has a rate outside 8-192 kHz (reading it then would fail)."""
    import soundfile

    try:
        info = soundfile.info(source)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise BadAudio(f"cannot read {source} as wav/flac ({first_line(exc)})") from None
    check_rate(source, info.samplerate)
    if info.frames <= 0:
        raise BadAudio(f"{source} holds no samples")
    return info.frames / info.samplerate


def check_rate(source: str, found: int, wanted: int | None = None) -> None:
    """:class:`BadAudio` for a sample rate outside what tunelab resamples (8-192 kHz)."""
    if not MIN_RATE <= found <= MAX_RATE:
        model = f" (the model wants {wanted} Hz)" if wanted else ""
        raise BadAudio(
            f"{source} has an unsupported sample rate of {found} Hz; tunelab reads "
            f"{MIN_RATE}-{MAX_RATE} Hz{model}: resample the file"
        )


def too_long(source: str, seconds: float, max_seconds: float) -> BadAudio:
    """The error for a clip longer than the model's window."""
    return BadAudio(
        f"{source} is {seconds:.1f} s long; the model hears at most {max_seconds:g} s per "
        "example: cut it into shorter clips"
    )


def read_audio(source: str, rate: int, max_seconds: float | None = None) -> Any:
    """The audio file as a mono float32 array at ``rate`` Hz; :class:`BadAudio` when it cannot
    be decoded, its rate is outside 8-192 kHz, or it is longer than ``max_seconds``."""
    import soundfile

    try:
        data, found = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise BadAudio(f"cannot read {source} as wav/flac ({first_line(exc)})") from None
    check_rate(source, found, rate)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if len(mono) == 0:
        raise BadAudio(f"{source} holds no samples")
    seconds = len(mono) / found
    if max_seconds is not None and seconds > max_seconds + 1e-6:
        raise too_long(source, seconds, max_seconds)
    return resample(mono, found, rate)


def resample(samples: Any, rate: int, target: int) -> Any:
    """``samples`` at ``rate`` Hz resampled to ``target`` Hz (unchanged when they match)."""
    if rate == target:
        return np.ascontiguousarray(samples, dtype=np.float32)
    from scipy.signal import resample_poly

    common = gcd(rate, target)
    out = resample_poly(samples, target // common, rate // common)
    return np.asarray(out, dtype=np.float32)
