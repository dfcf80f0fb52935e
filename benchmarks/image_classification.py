"""Fashion-MNIST image classification before/after fine-tuning (docs/multimodal.md).

Each run is ``examples/image-classification.yaml`` with the row's model, method,
``data.image_size``, ``train.max_steps`` and ``train.lr``; "before" evaluates the pretrained
backbone with its new, untrained head (``tunelab eval CONFIG``). Needs the assets of
``scripts/install.sh --multimodal``. Prints one JSON line per run.

    python benchmarks/image_classification.py                # every row of RUNS
    python benchmarks/image_classification.py --only dinov2  # rows whose model matches
    python benchmarks/image_classification.py --method full  # rows of one method
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tunelab.config import load_config
from tunelab.evaluate.runner import evaluate
from tunelab.io import atomic_write_text
from tunelab.train import train

EXAMPLE = Path(__file__).parents[1] / "examples" / "image-classification.yaml"
# (model dir under examples/models, method or "before", method settings, steps, image size, lr)
RUNS: list[tuple[str, str, dict[str, Any], int, int, float]] = [
    ("mobilenet_v2", "before", {}, 0, 112, 0.0),
    ("mobilenet_v2", "freeze", {"top_n_layers": 0}, 150, 112, 3e-3),
    ("mobilenet_v2", "lora", {}, 150, 112, 2e-3),
    ("mobilenet_v2", "bitfit", {}, 150, 112, 3e-3),
    ("mobilenet_v2", "full", {}, 150, 112, 1e-3),
    ("dinov2_small", "before", {}, 0, 56, 0.0),
    ("dinov2_small", "freeze", {"top_n_layers": 0}, 150, 56, 3e-3),
    ("dinov2_small", "lora", {}, 150, 56, 1e-3),
    ("dinov2_small", "bitfit", {}, 150, 56, 3e-3),
    ("dinov2_small", "full", {}, 150, 56, 1e-4),
    ("dinov2_small", "adapter", {}, 150, 56, 1e-3),
]


def overrides(model: str, method: str, settings: dict, steps: int, size: int, lr: float, out: Path):
    """The command-line overrides of one row."""
    items = [
        f"model.name_or_path=examples/models/{model}",
        f"data.image_size={size}",
        f"output.dir={out}",
        "output.report=false",
        f"data.cache_dir={out.parent / 'cache'}",
    ]
    if method != "before":
        items += [f"method.name={method}", f"train.max_steps={steps}", f"train.lr={lr}"]
        items += [f"method.{method}.{key}={value}" for key, value in settings.items()]
        items.append(f"train.eval_every={steps}")
    return items


def run(row: tuple, root: Path) -> dict[str, Any]:
    """Train (or evaluate the base of) one row; its test metrics and wall time."""
    model, method, settings, steps, size, lr = row
    out = root / f"{model}-{method}-{steps}-{size}"
    started = time.perf_counter()
    items = overrides(model, method, settings, steps, size, lr, out)
    if method == "before":
        cfg_path = root / f"{out.name}.yaml"
        atomic_write_text(cfg_path, EXAMPLE.read_text(encoding="utf-8"))
        metrics = evaluate(str(cfg_path), overrides=items)
    else:
        metrics = train(load_config(EXAMPLE, items), resume=False).final_metrics
    return {
        "model": model,
        "method": method,
        "settings": settings,
        "steps": steps,
        "image_size": size,
        "lr": lr,
        "accuracy": round(metrics["accuracy"], 4),
        "f1_macro": round(metrics["f1_macro"], 4),
        "trainable_params": metrics.get("trainable_params"),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the rows whose model name contains this")
    parser.add_argument("--method", help="run the rows of this method only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tunelab-image-") as tmp:
        for row in RUNS:
            if (args.only is None or args.only in row[0]) and args.method in (None, row[1]):
                print(json.dumps(run(row, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
