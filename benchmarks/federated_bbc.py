"""Issue 17 section 3: federated vs centralized on BBC News (MiniLM + LoRA, 4 clients).

Runs ``examples/federated.yaml`` with FedAvg, FedProx and FedAdam on an IID and a
Dirichlet(alpha) partition, and centralized training (``tunelab train``) on the same total
number of examples (rounds x clients x local_steps x batch_size); prints test accuracy,
macro-F1, bytes per round vs the full model, and wall time per run.

    .venv/bin/python benchmarks/federated_bbc.py                    # 5 rounds x 10 local steps
    .venv/bin/python benchmarks/federated_bbc.py --rounds 3 --local-steps 5 --alpha 0.3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/federated.yaml"
STRATEGIES = {
    "fedavg": [],
    "fedprox": ["federated.strategy.mu=0.01"],
    "fedadam": ["federated.strategy.server_lr=0.01"],
}


def tunelab(command: str, out: Path, overrides: list[str]) -> dict:
    """Run one tunelab command on the example; its summary and test metrics."""
    args = [sys.executable, "-m", "tunelab.cli", command, EXAMPLE, f"output.dir={out}"]
    args += ["train.report_to=[]", "--no-resume", *overrides]
    subprocess.run(args, cwd=REPO, check=True, capture_output=True, text=True)
    summary = json.loads((out / "train_summary.json").read_text())
    metrics = json.loads((out / "eval_results.json").read_text())["metrics"]
    return {"summary": summary, "accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--local-steps", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-federated")
    args = parser.parse_args()
    common = [f"federated.rounds={args.rounds}", f"federated.local_steps={args.local_steps}"]
    common += ["train.early_stopping.patience=null"]
    rows = []
    steps = args.rounds * 4 * args.local_steps  # every client every round (fraction 1)
    central = tunelab(
        "train", args.out / "centralized", [f"train.max_steps={steps}", "train.epochs=100"]
    )
    rows.append(("centralized", "-", central, None))
    for kind in ("iid", "dirichlet"):
        partition = [f"federated.partition.kind={kind}", f"federated.partition.alpha={args.alpha}"]
        for name, extra in STRATEGIES.items():
            out = args.out / f"{kind}-{name}"
            result = tunelab(
                "federated", out, [*common, *partition, f"federated.strategy.name={name}", *extra]
            )
            rows.append((name, kind, result, result["summary"]["federated"]))
    print(
        "| run | partition | test accuracy | macro-F1 | bytes per round (sent) | vs full model x clients | wall s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, kind, result, fed in rows:
        sent = fed["history"][0]["bytes_sent"] if fed else None
        ratio = f"{sent / (fed['full_model_bytes'] * fed['clients_per_round']):.4f}" if fed else "-"
        shown = f"{sent:,}" if sent else "-"
        print(
            f"| {name} | {kind} | {result['accuracy']:.4f} | {result['f1_macro']:.4f} | {shown} | "
            f"{ratio} | {result['summary']['wall_time_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
