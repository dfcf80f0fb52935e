"""Before/after quality of the image_chat recipe (examples/image-chat.yaml) on held-out
Fashion-MNIST images, plus a text-only baseline showing the answers use the image.

    python benchmarks/image_chat_quality.py runs/image-chat [--images-per-class 3]

For N test images per class (seeded) it asks "What item is shown?" and "Describe the image." of
- the composed model before training (random projector),
- the trained run (``runs/image-chat``: both stages; ``.../stages/1-align``: the projector only),
- the trained run without the image (the same question, no image: the language model alone),
and prints class accuracy (the answer names the image's class and no other), exact match of
the answer, and BLEU / ROUGE-L of the captions. Greedy decoding, 12 new tokens.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from build_multimodal_data import FASHION_ANSWERS  # noqa: E402

BASE = ROOT / "examples" / "models" / "llava_dinov2_smollm2"
DATA = ROOT / "examples" / "data" / "generated" / "image_chat_test.jsonl"
NEW_TOKENS = 12
NOUNS = {label: answer.split(" ", 1)[1] for label, answer in FASHION_ANSWERS.items()}


def named_classes(answer: str) -> set[str]:
    """The classes whose noun occurs in ``answer`` as whole words ("shirt" not in "t-shirt")."""
    text = answer.lower()
    found = set()
    for label, noun in sorted(NOUNS.items(), key=lambda item: -len(item[1])):
        pattern = rf"(?<![\w-]){re.escape(noun.removeprefix('pair of '))}(?![\w-])"
        if re.search(pattern, text):
            found.add(label)
            text = re.sub(pattern, " ", text)
    return found


def test_rows(per_class: int) -> dict[str, list[dict[str, Any]]]:
    """Question and caption rows of ``per_class`` seeded test images per class."""
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line]
    by_label: dict[str, list[str]] = {}
    for row in rows:
        image = row["messages"][0]["content"][0]["image"]
        by_label.setdefault(row["label"], [])
        if image not in by_label[row["label"]]:
            by_label[row["label"]].append(image)
    rng = random.Random(0)
    chosen = {img for imgs in by_label.values() for img in rng.sample(imgs, per_class)}
    out: dict[str, list[dict[str, Any]]] = {"question": [], "caption": []}
    for row in rows:
        image = row["messages"][0]["content"][0]["image"]
        if image in chosen:
            kind = (
                "question"
                if row["messages"][0]["content"][1]["text"].startswith("What")
                else "caption"
            )
            out[kind].append(row)
    return out


def answers(model: Any, processor: Any, rows: list[dict[str, Any]], with_image: bool) -> list[str]:
    """Greedy answers to the rows' user turns, with or without their image."""
    from tunelab.data.templates import ChatRenderer
    from tunelab.decoding import generate
    from tunelab.modalities.image_chat_model import generation_inputs

    renderer = ChatRenderer(processor.tokenizer, "auto")
    texts = []
    for start in range(0, len(rows), 10):
        batch = rows[start : start + 10]
        prompts, images = [], []
        for row in batch:
            question = row["messages"][0]["content"][1]["text"]
            content = f"<image>\n{question}" if with_image else question
            turns = [{"role": "user", "content": content}, {"role": "assistant", "content": ""}]
            prompts.append(renderer.prompt(turns))
            images.append(
                [str(DATA.parent / row["messages"][0]["content"][0]["image"])] if with_image else []
            )
        ids, inputs = generation_inputs(processor, prompts, images, False)
        texts += generate(model, processor.tokenizer, ids, NEW_TOKENS, inputs=inputs).texts
    return texts


def scores(rows: dict[str, list[dict[str, Any]]], said: dict[str, list[str]]) -> dict[str, float]:
    """Class accuracy and exact match of the questions; BLEU and ROUGE-L of the captions."""
    from tunelab.evaluate.generation import bleu, rouge
    from tunelab.evaluate.qa import exact_match

    questions = list(zip(rows["question"], said["question"], strict=True))
    captions = [row["messages"][1]["content"] for row in rows["caption"]]
    return {
        "class_accuracy": sum(named_classes(a) == {r["label"]} for r, a in questions)
        / len(questions),
        "exact_match": sum(exact_match(a, r["messages"][1]["content"]) for r, a in questions)
        / len(questions),
        "caption_class_accuracy": sum(
            named_classes(a) == {r["label"]}
            for r, a in zip(rows["caption"], said["caption"], strict=True)
        )
        / len(captions),
        "bleu": bleu(said["caption"], captions),
        "rougeL": rouge(said["caption"], captions)["rougeL"],
    }


def main() -> None:
    import torch
    from transformers import LlavaForConditionalGeneration

    import tunelab
    from tunelab.modalities.image_chat import MODALITY
    from tunelab.models import quiet_transformers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--images-per-class", type=int, default=3)
    parser.add_argument("--no-before", action="store_true", help="skip the untrained model")
    args = parser.parse_args()
    quiet_transformers()
    torch.manual_seed(0)
    rows = test_rows(args.images_per_class)
    loaded = tunelab.load(args.run)
    variants = {}
    if not args.no_before:
        base = LlavaForConditionalGeneration.from_pretrained(BASE).eval()
        variants["composed, before training"] = (
            base,
            MODALITY.load_processor(str(BASE), None),
            True,
        )
    variants[f"{args.run}, with the image"] = (loaded.model, loaded.tokenizer, True)
    variants[f"{args.run}, no image (text-only)"] = (loaded.model, loaded.tokenizer, False)
    table = {}
    for name, (model, processor, with_image) in variants.items():
        started = time.perf_counter()
        said = {
            kind: answers(model, processor, kind_rows, with_image)
            for kind, kind_rows in rows.items()
        }
        table[name] = scores(rows, said) | {"seconds": round(time.perf_counter() - started, 1)}
        table[name]["sample"] = said["question"][0]
        print(name, json.dumps(table[name]), flush=True)
    n = len(rows["question"])
    print(f"\n{n} test images ({args.images_per_class} per class), a question and a caption each\n")
    print(
        "| model | class accuracy (question) | exact match | class accuracy (caption) | BLEU | ROUGE-L |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, s in table.items():
        print(
            f"| {name} | {s['class_accuracy']:.2f} | {s['exact_match']:.2f} | "
            f"{s['caption_class_accuracy']:.2f} | {s['bleu']:.1f} | {s['rougeL']:.2f} |"
        )


if __name__ == "__main__":
    main()
