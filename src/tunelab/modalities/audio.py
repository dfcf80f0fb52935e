"""Reading audio for the ``speech`` format: wav/flac files -> mono float32 at
the feature extractor's rate, with one-line errors that name the row.

soundfile (libsndfile) decodes; channels are averaged to mono; a different sample rate is
resampled with a polyphase filter (``scipy.signal.resample_poly``).
"""

from __future__ import annotations

from math import gcd
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.errors import first_line

FORMATS = {".wav": "WAV", ".flac": "FLAC"}
MIN_RATE, MAX_RATE = 8_000, 192_000  # below 8 kHz there is no speech band left to resample


class BadAudio(ValueError):
    """An audio value that cannot be used (missing, unreadable, unsupported rate or length);
    the message names the row and the fix."""


def audio_source(value: Any, base_dir: Path, where: str) -> str:
    """The row's audio as an absolute file path (a relative path is relative to the data
    file; a ``{"path": ...}`` struct is read too); :class:`BadAudio` for a missing file, another
    format or a value that is not a path."""
    if isinstance(value, dict) and isinstance(value.get("path"), str):
        value = value["path"]
    if not isinstance(value, str) or not value.strip():
        raise BadAudio(f"{where}: audio must be the path of a wav or flac file, not {value!r}")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if path.suffix.lower() not in FORMATS:
        raise BadAudio(
            f"{where}: audio {value!r} is not a wav or flac file; convert it (e.g. ffmpeg -i "
            f"{path.name} {path.stem}.wav)"
        )
    if not path.is_file():
        raise BadAudio(f"{where}: audio file not found: {path}")
    return str(path)


def read_audio(source: str, rate: int, where: str, max_seconds: float | None) -> Any:
    """The audio as a mono float32 array at ``rate`` Hz; :class:`BadAudio` when it cannot be
    decoded, its rate is outside 8-192 kHz, or it is longer than ``max_seconds``."""
    import soundfile

    shown = source
    try:
        data, found = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise BadAudio(f"{where}: cannot read {shown} as wav/flac ({first_line(exc)})") from None
    if not MIN_RATE <= found <= MAX_RATE:
        raise BadAudio(
            f"{where}: {shown} has an unsupported sample rate of {found} Hz; tunelab reads "
            f"{MIN_RATE}-{MAX_RATE} Hz (the model wants {rate} Hz): resample the file"
        )
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if len(mono) == 0:
        raise BadAudio(f"{where}: {shown} holds no samples")
    seconds = len(mono) / found
    if max_seconds is not None and seconds > max_seconds + 1e-6:
        raise BadAudio(
            f"{where}: {shown} is {seconds:.1f} s long; the model hears at most {max_seconds:g} s "
            "per example: cut it into shorter clips"
        )
    return resample(mono, found, rate)


def resample(samples: Any, rate: int, target: int) -> Any:
    """``samples`` at ``rate`` Hz resampled to ``target`` Hz (unchanged when they match)."""
    if rate == target:
        return np.ascontiguousarray(samples, dtype=np.float32)
    from scipy.signal import resample_poly

    common = gcd(rate, target)
    out = resample_poly(samples, target // common, rate // common)
    return np.asarray(out, dtype=np.float32)
