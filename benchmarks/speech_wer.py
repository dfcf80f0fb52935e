"""Word error rate of Whisper tiny.en before and after fine-tuning (examples/speech.yaml):
the base model, LoRA and full fine-tuning, each scored on the held-out espeak-ng sentences
(``speech_test.jsonl``) and on Debian's real pocketsphinx recordings (``pocketsphinx.jsonl``).

    python benchmarks/speech_wer.py                    # 20 steps each (2 CPU cores: ~30 min)
    python benchmarks/speech_wer.py --steps 10 --out /tmp/speech-wer

Prints a markdown table (WER, CER; lower is better) and writes ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import yaml

from tunelab import evaluate_run, finetune
from tunelab.config import load_config

ROOT = Path(__file__).parents[1]
CONFIG = ROOT / "examples" / "speech.yaml"
REAL = "data.test_path=" + str(ROOT / "examples/data/generated/pocketsphinx.jsonl")
METHODS = {
    "lora": {
        "name": "lora",
        "lora": {"r": 16, "alpha": 32, "target_modules": ["q_proj", "v_proj"]},
    },
    "full": {"name": "full"},
}
LR = {"lora": 1e-3, "full": 1e-5}


def run_config(out: Path, method: str, steps: int) -> Path:
    """examples/speech.yaml with absolute paths, ``method`` and ``steps``, in ``out``."""
    raw: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    for key in ("path", "test_path"):
        raw["data"][key] = str(ROOT / raw["data"][key])
    raw["model"]["name_or_path"] = str(ROOT / raw["model"]["name_or_path"])
    raw["method"] = METHODS[method]
    raw["train"].update(max_steps=steps, lr=LR[method], eval_every=None, save_every=steps)
    raw["data"]["split"] = {"train": 1.0, "validation": 0.0, "test": 0.0}  # every row trains
    raw["output"]["dir"] = str(out / method)
    path = out / f"{method}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def scores(results: dict[str, Any]) -> dict[str, float]:
    return {"wer": results["wer"], "cer": results["cer"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "speech-wer")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--no-base", action="store_true", help="skip the base model's rows")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table: dict[str, dict[str, Any]] = {}
    if not args.no_base:
        base_cfg = run_config(args.out, "lora", args.steps)
        table["base"] = {
            "espeak": scores(evaluate_run(base_cfg)),
            "pocketsphinx": scores(evaluate_run(base_cfg, overrides=[REAL])),
        }
    for method in args.methods:
        path = run_config(args.out, method, args.steps)
        started = time.perf_counter()
        result = finetune(load_config(path))
        seconds = time.perf_counter() - started
        run = Path(load_config(path).output.dir)
        table[method] = {
            "espeak": scores(result.final_metrics),
            "pocketsphinx": scores(evaluate_run(run, overrides=[REAL])),
            "train_s": round(seconds),
            "steps": result.steps,
        }
        (args.out / "results.json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    print("| model | espeak test WER | espeak CER | pocketsphinx WER | pocketsphinx CER |")
    print("|---|---|---|---|---|")
    for name, row in table.items():
        e, p = row["espeak"], row["pocketsphinx"]
        label = name if name == "base" else f"{name}, {row['steps']} steps ({row['train_s']} s)"
        print(f"| {label} | {e['wer']:.3f} | {e['cer']:.3f} | {p['wer']:.3f} | {p['cer']:.3f} |")


if __name__ == "__main__":
    main()
