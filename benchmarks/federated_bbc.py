"""Issue 17 section 3: federated vs centralized on BBC News (MiniLM + LoRA, 4 clients).

Runs ``examples/federated.yaml`` with FedAvg, FedProx and FedAdam on an IID and a
Dirichlet(alpha) partition, and centralized training (``tunelab train``) on the same total
number of examples (rounds x clients x local_steps x batch_size, validated as often as the
federated runs are: once per round's worth of steps, the best validation kept as in the
federated runs); prints test accuracy, macro-F1, bytes per round vs the full model, and wall
time per run with its ratio to the centralized run. One after the other, in one go.

    nice -n 15 .venv/bin/python benchmarks/federated_bbc.py     # the docs table (small, 2 cores)
    .venv/bin/python benchmarks/federated_bbc.py --rounds 5 --local-steps 10 --batch-size 16 \
        --max-length 128 --max-samples 0 --split 0.8,0.1,0.1        # the example's own sizes

Each run's figures are also written to ``OUT/NAME/bench.json``; ``--reuse`` keeps those
already there (to finish an interrupted benchmark).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/federated.yaml"
CLIENTS = 4  # the example's federated.clients
STRATEGIES = {
    "fedavg": [],
    "fedprox": ["federated.strategy.mu=0.01"],
    "fedadam": ["federated.strategy.server_lr=0.01"],
}


def tunelab(command: str, out: Path, overrides: list[str], reuse: bool) -> dict:
    """Run one tunelab command on the example; its summary, test metrics and wall time."""
    saved = out / "bench.json"
    if reuse and saved.is_file():
        return json.loads(saved.read_text())
    args = [sys.executable, "-m", "tunelab.cli", command, EXAMPLE, f"output.dir={out}"]
    args += ["train.report_to=[]", "--no-resume", *overrides]
    started = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{command} {out.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    summary = json.loads((out / "train_summary.json").read_text())
    metrics = json.loads((out / "eval_results.json").read_text())["metrics"]
    result = {
        "summary": summary,
        "accuracy": metrics["accuracy"],
        "f1_macro": metrics["f1_macro"],
        "process_wall_s": time.perf_counter() - started,
    }
    saved.write_text(json.dumps(result, indent=1))
    print(f"{out.name}: accuracy {result['accuracy']:.4f}, {result['process_wall_s']:.0f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-steps", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--max-samples", type=int, default=600, help="data.max_samples; 0: all")
    parser.add_argument(
        "--split", default="0.6,0.1,0.3", help="train,validation,test fractions (data.split)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-federated")
    parser.add_argument("--reuse", action="store_true", help="keep runs with a bench.json")
    args = parser.parse_args()
    train, validation, test = args.split.split(",")
    data = [f"data.max_length={args.max_length}", f"train.batch_size={args.batch_size}"]
    data += [f"data.split.train={train}", f"data.split.validation={validation}"]
    data += [f"data.split.test={test}", "train.early_stopping.patience=null"]  # all steps
    data += [f"data.max_samples={args.max_samples}"] if args.max_samples else []
    common = [f"federated.rounds={args.rounds}", f"federated.local_steps={args.local_steps}"]
    steps_per_round = CLIENTS * args.local_steps  # every client every round (fraction 1)
    central = tunelab(
        "train",
        args.out / "centralized",
        [
            *data,
            f"train.max_steps={args.rounds * steps_per_round}",
            f"train.eval_every={steps_per_round}",
            "train.epochs=100",
        ],
        args.reuse,
    )
    rows = [("centralized", "-", central, None)]
    for kind in ("iid", "dirichlet"):
        partition = [f"federated.partition.kind={kind}", f"federated.partition.alpha={args.alpha}"]
        for name, extra in STRATEGIES.items():
            result = tunelab(
                "federated",
                args.out / f"{kind}-{name}",
                [*data, *common, *partition, f"federated.strategy.name={name}", *extra],
                args.reuse,
            )
            rows.append((name, kind, result, result["summary"]["federated"]))
    print_table(rows, central, args)


def print_table(rows: list, central: dict, args: argparse.Namespace) -> None:
    """The markdown table of docs/federated.md."""
    examples = args.rounds * CLIENTS * args.local_steps * args.batch_size
    print(f"\n{args.rounds} rounds x {args.local_steps} local steps, {examples} examples per run")
    print(
        "| run | partition | test accuracy | macro-F1 | bytes sent per round | "
        "vs full model x clients | wall s | wall vs centralized |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, kind, result, fed in rows:
        sent = fed["history"][0]["bytes_sent"] if fed else None
        ratio = f"{sent / (fed['full_model_bytes'] * fed['clients_per_round']):.4f}" if fed else "-"
        wall = result["process_wall_s"]
        print(
            f"| {name} | {kind} | {result['accuracy']:.4f} | {result['f1_macro']:.4f} | "
            f"{f'{sent:,}' if sent else '-'} | {ratio} | {wall:.0f} | "
            f"{wall / central['process_wall_s']:.2f}x |"
        )


if __name__ == "__main__":
    main()
