"""``python -m tunelab.plan.probe_worker SPEC.json``: a fresh process that loads the model,
applies one method and times a few real training steps at small micro-batches (its peak RSS
is read by the parent through ``os.wait4``). Prints one JSON line of seconds per step."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Time ``spec["steps"]`` steps at each micro-batch of ``spec["micros"]`` after a warmup."""
    import torch

    from tunelab.config import load_config
    from tunelab.plan.trace import autocast_for
    from tunelab.train.fast_dropout import apply_fast_dropout
    from tunelab.train.objective import loss_fn_for
    from tunelab.train.optim import build_optimizer
    from tunelab.train.run import build_model

    cfg = load_config(spec["config"])
    model = build_model(cfg, spec["label_names"])  # as the training process builds it
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not getattr(cfg.method.settings, "quantize", None):
        model.to(device)
    apply_fast_dropout(model, cfg.train.fast_dropout, device)
    model.train()
    optimizer = build_optimizer(model, cfg.train)
    loss_fn = loss_fn_for(cfg.task, cfg.train.loss_chunk_size)
    max_norm = cfg.train.max_grad_norm or float("inf")  # the loop always takes the norm
    one = {k: torch.tensor(v, device=device) for k, v in spec["batch"].items()}
    times: dict[str, float] = {}
    for micro in spec["micros"]:
        batch = {k: v.repeat(micro, *([1] * (v.dim() - 1))) for k, v in one.items()}
        durations = []
        for _ in range(spec["steps"] + 1):  # the first is a warmup
            started = time.perf_counter()
            with autocast_for(cfg.train.precision, device):
                loss, _ = loss_fn(model, batch)
            loss.float().backward()
            float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))  # as the loop
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            durations.append(time.perf_counter() - started)
        times[str(micro)] = sorted(durations[1:])[len(durations[1:]) // 2]
    out: dict[str, Any] = {"seconds": times}
    if device == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    print(json.dumps(run(spec)))


if __name__ == "__main__":
    main()
