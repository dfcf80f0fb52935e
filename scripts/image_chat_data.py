"""image_chat rows (questions and captions) from the Fashion-MNIST image rows.

Reads ``fashion_mnist_{train,test}.jsonl`` (``{"image": PATH, "label": NAME}``, written by
scripts/build_multimodal_data.py) in the generated-data folder and writes
``image_chat_{train,test}.jsonl`` beside them: for every image one question row
("What item is shown?" -> "an ankle boot") and one caption row ("Describe the image." ->
"a photo of an ankle boot"), the image as an image part of the user turn.

    python scripts/image_chat_data.py [examples/data/generated]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

QUESTION = "What item is shown?"
CAPTION = "Describe the image."
ANSWERS = {
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


def answer_for(label: str) -> str:
    """The short answer naming ``label`` ("an ankle boot")."""
    if label in ANSWERS:
        return ANSWERS[label]
    word = label.lower()
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def chat_row(image: str, prompt: str, reply: str, label: str) -> dict:
    """One image_chat row: a user turn with the image and the prompt, the assistant's reply."""
    user = [{"type": "image", "image": image}, {"type": "text", "text": prompt}]
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": reply},
        ],
        "label": label,
    }


def image_chat_rows(image_rows: list[dict]) -> list[dict]:
    """A question row and a caption row per image row, questions first."""
    questions, captions = [], []
    for row in image_rows:
        answer = answer_for(row["label"])
        questions.append(chat_row(row["image"], QUESTION, answer, row["label"]))
        captions.append(chat_row(row["image"], CAPTION, f"a photo of {answer}", row["label"]))
    return questions + captions


def build_image_chat(folder: Path) -> dict[str, int]:
    """Write ``image_chat_{split}.jsonl`` for each ``fashion_mnist_{split}.jsonl`` in
    ``folder`` (written atomically); returns the rows written per split."""
    counts = {}
    for split in ("train", "test"):
        source = folder / f"fashion_mnist_{split}.jsonl"
        if not source.is_file():
            raise SystemExit(f"{source}: not found; run scripts/build_multimodal_data.py first")
        rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
        out = image_chat_rows(rows)
        target = folder / f"image_chat_{split}.jsonl"
        tmp = target.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
        tmp.replace(target)
        counts[split] = len(out)
    return counts


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/data/generated")
    print(build_image_chat(root))
