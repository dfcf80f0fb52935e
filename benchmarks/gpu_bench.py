"""The GPU benchmark's model, data and LoRA throughput rows (run by ``benchmarks/gpu.sh``).

- ``prepare``: a 1B-class Llama built from its config (random init; Llama-3.2-1B's shape
  with the vocabulary of a byte-level BPE trained on the data), saved in bf16; the carried
  instruction rows (``benchmarks/gpu_carry.py``) tokenised once through ``tunelab.prepare_data``;
  the measured bf16 matmul peak.
- ``throughput``: tunelab on its defaults vs HF Trainer + PEFT (length-grouped and random
  batches) with the same model, examples, LoRA settings, optimizer and schedule, every system
  on bf16 weights, bf16 autocast and SDPA attention, one epoch each, in fresh subprocesses
  that alternate (order reversed each round) until the rounds or the time are used up.

``--smoke`` runs the same path on CPU with a tiny model of the same shape family.

    python benchmarks/gpu_bench.py prepare --work DIR --data .gpu/data/instructions.jsonl
    python benchmarks/gpu_bench.py throughput --work DIR --seconds 240
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from throughput_assets import Assets, Job, data_info, tokenise
from train_throughput import run_job

# Llama-3.2-1B: hidden 2048, 16 layers, MLP 8192, 32 heads, 8 KV heads, tied embeddings
SHAPES = {
    "gpu": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 32, "num_key_value_heads": 8},
    "smoke": {"hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2},
}  # fmt: skip
VOCAB = {"gpu": 32000, "smoke": 2000}
ROWS = {"gpu": 1024, "smoke": 24}  # train examples of the throughput epoch (+ 32 held out)
SYSTEMS = ("tunelab", "hf-grouped", "hf")
SEED = 42


def mode(smoke: bool) -> str:
    return "smoke" if smoke else "gpu"


def setting(smoke: bool) -> dict[str, str]:
    """Device, precision, weight dtype and attention kernel of every system."""
    device = "cpu" if smoke else "cuda"
    return {"device": device, "precision": "bf16", "dtype": "bfloat16", "attn": "sdpa"}


def build_model(out: Path, rows: list[dict[str, str]], smoke: bool) -> int:
    """The random-init Llama and its tokenizer at ``out`` (bf16 safetensors); its size."""
    import torch
    from transformers import LlamaForCausalLM

    from tunelab.testing import build_tokenizer, tiny_config

    texts = (" ".join(r.values()) for r in rows)
    tokenizer = build_tokenizer(out, texts, vocab_size=VOCAB[mode(smoke)])
    ids = {k: getattr(tokenizer, k) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    config = tiny_config(
        "llama", len(tokenizer), **SHAPES[mode(smoke)], **ids,
        max_position_embeddings=2048, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(SEED)
    with torch.device(setting(smoke)["device"]):
        model = LlamaForCausalLM(config)
    model.to(torch.bfloat16).save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def matmul_peak_gflops(smoke: bool) -> float:
    """The bf16 matmul speed every MFU is counted against (8192^3 on the GPU)."""
    import torch

    if smoke:
        from tunelab.train.precision import matmul_gflops

        return matmul_gflops(torch.bfloat16)
    from tunelab.plan.hardware import cuda_gflops

    cuda_gflops("bf16", 8192, 3)  # warm the clocks
    return cuda_gflops("bf16", 8192, 20)


def environment(smoke: bool) -> dict[str, Any]:
    """Versions and the device, for the report."""
    from importlib.metadata import version

    import torch

    env = {p: version(p) for p in ("torch", "transformers", "peft", "accelerate", "datasets")}
    env["device"] = "CPU (smoke)" if smoke else torch.cuda.get_device_name()
    env["python"] = sys.version.split()[0]
    return env


def prepare(work: Path, data: Path, smoke: bool) -> None:
    from tunelab.models import load_tokenizer

    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    model_dir = work / "llama-1b"
    params = build_model(model_dir, rows, smoke)
    assets = Assets(work=work, model_dirs={"llama": str(model_dir)})
    job = Job("tunelab", "llama", rows=ROWS[mode(smoke)])
    assets.data[f"llama/{job.rows}"] = data_info(work, job, rows)
    tokenise(assets, job, load_tokenizer)
    assets.peak_gflops["bf16"] = matmul_peak_gflops(smoke)
    long = [r for r in rows if len(r["input"]) > 1500][:64]  # the plan part's rows
    (work / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in long))
    saved = {**asdict(assets), "work": str(work), "params": params, "env": environment(smoke)}
    (work / "assets.json").write_text(json.dumps(saved, indent=1))
    info = assets.data[f"llama/{job.rows}"]
    print(
        f"prepared in {time.perf_counter() - started:.0f} s: Llama {params / 1e6:.4g}M params, "
        f"{info['n']} train examples (mean {info['mean_length']:.0f} tokens), bf16 matmul "
        f"{assets.peak_gflops['bf16'] / 1000:.3g} TFLOP/s",
        flush=True,
    )


def load_assets(work: Path) -> tuple[Assets, dict[str, Any]]:
    saved = json.loads((work / "assets.json").read_text())
    assets = Assets(Path(saved["work"]), saved["model_dirs"], saved["data"], saved["peak_gflops"])
    return assets, saved


def throughput(work: Path, rounds: int, seconds: float, smoke: bool) -> None:
    """The systems alternate round by round; a run starts only while the longest run so far
    still fits in ``seconds``. Results are saved after each run."""
    deadline = time.monotonic() + seconds
    assets, _ = load_assets(work)
    jobs = [Job(s, "llama", rows=ROWS[mode(smoke)], rounds=rounds) for s in SYSTEMS]
    results: dict[str, list[dict[str, Any]]] = {j.key: [] for j in jobs}
    longest = 0.0
    for round_ in range(rounds):
        for job in jobs if round_ % 2 == 0 else reversed(jobs):
            if time.monotonic() + longest > deadline:
                print(f"  time is up: {job.key} round {round_} not run", flush=True)
                continue
            started = time.monotonic()
            results[job.key].append(run_job(assets, job, round_, setting(smoke)))
            longest = max(longest, time.monotonic() - started)
            print(f"  round {round_}: {job.key} done in {time.monotonic() - started:.0f} s")
            saved = {"jobs": [asdict(j) for j in jobs], "results": results}
            (work / "throughput.json").write_text(json.dumps(saved))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("prepare", "throughput"))
    parser.add_argument("--work", type=Path, required=True, help="Scratch folder.")
    parser.add_argument("--data", type=Path, help="prepare: the carried instruction rows.")
    parser.add_argument("--rounds", type=int, default=2, help="throughput: rounds per system.")
    parser.add_argument("--seconds", type=float, default=240, help="throughput: time to use.")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model (a check).")
    args = parser.parse_args()
    if args.part == "prepare":
        if args.data is None:
            parser.error("prepare needs --data (run benchmarks/gpu_carry.py first)")
        prepare(args.work, args.data, args.smoke)
    else:
        throughput(args.work, args.rounds, args.seconds, args.smoke)


if __name__ == "__main__":
    main()
