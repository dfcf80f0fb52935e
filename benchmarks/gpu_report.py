"""The GPU benchmark's tables (``benchmarks/gpu.sh``'s last part): LoRA throughput with the
ratios tunelab / HF Trainer + PEFT, and ``tunelab plan`` vs the measured peak, as markdown
(``gpu.md``, pasted into docs/performance.md) and JSON (``gpu.json``).

Throughput of a run: from the end of its first optimizer step (CUDA and kernel warm-up) to
the end of its last; medians over runs, peak GPU memory the highest.

    python benchmarks/gpu_report.py --work DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from throughput_assets import Job, data_key
from train_throughput import summarise


def warm(result: dict[str, Any]) -> dict[str, Any]:
    """A run without its first step: timed from that step's end."""
    steps = result["steps"]
    return {**result, "start": steps[0]["t"], "steps": steps[1:]}


def throughput_rows(saved: dict[str, Any], assets: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per system: medians over its finished runs (the failed ones counted)."""
    rows = []
    peak = assets["peak_gflops"]["bf16"]
    for spec in saved["jobs"]:
        job = Job(**spec)
        runs = saved["results"].get(job.key, [])
        done = [r for r in runs if len(r.get("steps", [])) > 1]
        row: dict[str, Any] = {
            "system": job.system,
            "runs": len(done),
            "failed": len(runs) - len(done),
        }
        if done:
            info = assets["data"][data_key(job)]
            summaries = [summarise(job, warm(r), peak, info) for r in done]
            row.update({k: statistics.median(s[k] for s in summaries) for k in summaries[0]})
            row["gpu_mb"] = max(r.get("cuda_peak_mb", float("nan")) for r in done)
            row["rss_mb"] = max(s["rss_mb"] for s in summaries)
            heldout = [r["heldout_loss"] for r in done if "heldout_loss" in r]
            row["heldout"] = statistics.fmean(heldout) if heldout else float("nan")
        else:
            row["error"] = f"failed: {runs[0].get('error')}" if runs else "not run (time)"
        rows.append(row)
    return rows


def ratios(rows: list[dict[str, Any]], gpu: bool) -> dict[str, dict[str, float]]:
    """tunelab / each baseline, per metric (peak memory: GPU, or RSS on CPU), for the systems
    that ran."""
    by = {r["system"]: r for r in rows if r["runs"]}
    out: dict[str, dict[str, float]] = {}
    if "tunelab" not in by:
        return out
    for base in (s for s in by if s != "tunelab"):
        out[base] = {
            m: by["tunelab"][m] / by[base][m]
            for m in ("loss_tok_s", "samples_s", "gpu_mb" if gpu else "rss_mb", "heldout")
            if by[base].get(m)
        }
    return out


def throughput_table(rows: list[dict[str, Any]], gpu: bool) -> list[str]:
    memory = "peak GPU MB" if gpu else "peak RSS MB"
    lines = [
        f"| system | loss tok/s | samples/s | tok/s | MFU | {memory} | held-out loss | s/epoch | steps | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if not r["runs"]:
            lines.append(f"| {r['system']} | {r['error']} | | | | | | | | 0 |")
            continue
        mem = r["gpu_mb"] if gpu else r["rss_mb"]
        lines.append(
            f"| {r['system']} | {r['loss_tok_s']:,.0f} | {r['samples_s']:.1f} | {r['tok_s']:,.0f} "
            f"| {r['mfu']:.1%} | {mem:,.0f} | {r['heldout']:.4f} | {r['seconds']:.1f} "
            f"| {r['steps']:.0f} | {r['runs']} |"
        )
    return lines


def plan_table(saved: dict[str, Any], gpu: bool) -> list[str]:
    what, base_name = ("allocated + context", "context") if gpu else ("RSS", "base RSS")
    lines = [
        f"| method | checkpointing | plan MB | measured MB ({what}) | plan / measured "
        f"| plan {base_name} MB | measured context MB | plan step s | measured step s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = saved["plan"]["base_mb"]
    for r in saved["rows"]:
        est = r["plan"]["peak_memory_mb"]
        ckpt = "yes" if r["checkpointing"] else "no"
        if "error" in r:
            lines.append(
                f"| {r['method']} | {ckpt} | {est:,.0f} | failed: {r['error']} | | | | | |"
            )
            continue
        context = f"{r['context_mb']:,.0f}" if "context_mb" in r else "-"
        lines.append(
            f"| {r['method']} | {ckpt} | {est:,.0f} | {r['measured_mb']:,.0f} "
            f"| {est / r['measured_mb']:.2f} | {base:,.0f} | {context} "
            f"| {r['plan']['step_time_s']:.3f} | {r['step_s']:.3f} |"
        )
    return lines


def report(work: Path) -> tuple[list[str], dict[str, Any]]:
    """The markdown lines and the JSON of whatever parts finished."""
    assets = json.loads((work / "assets.json").read_text())
    env, gpu = assets["env"], not assets["env"]["device"].startswith("CPU")
    versions = ", ".join(f"{k} {env[k]}" for k in ("torch", "transformers", "peft", "accelerate"))
    lines = [f"{env['device']}; Python {env['python']}, {versions}; Llama-shaped model of "
             f"{assets['params'] / 1e6:,.4g}M parameters (random init), bf16 weights + bf16 "
             "autocast, SDPA attention."]  # fmt: skip
    out: dict[str, Any] = {"env": env, "params": assets["params"]}
    path = work / "throughput.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        rows = throughput_rows(saved, assets)
        info = next(iter(assets["data"].values()))
        lines += ["", f"LoRA (r 8, all linear layers), one epoch of {info['n']} instruction "
                  f"examples (mean {info['mean_length']:.0f} tokens, max_length "
                  f"{info['max_length']}), batch {info['batch']}; MFU of the useful FLOPs "
                  f"over the measured bf16 matmul peak ({assets['peak_gflops']['bf16'] / 1e3:,.3g} "
                  "TFLOP/s); timed from the end of the first step:", ""]  # fmt: skip
        lines += throughput_table(rows, gpu)
        out.update(throughput=rows, ratios=ratios(rows, gpu))
        for base, values in out["ratios"].items():
            shown = ", ".join(f"{k} {v:.2f}x" for k, v in values.items())
            lines.append(f"\ntunelab / {base}: {shown}")
    else:
        lines.append("\nthroughput: not run")
    path = work / "plan_vs_measured.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        lines += ["", f"`tunelab plan` vs measured, micro-batch {saved['micro_batch']} x "
                  f"{saved['seq']} tokens, bf16, loss chunk 1024:", ""]  # fmt: skip
        lines += plan_table(saved, gpu)
        out["plan"] = saved
    else:
        lines.append("\nplan vs measured: not run")
    return lines, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    lines, out = report(args.work)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.md").write_text("\n".join(lines) + "\n")
    (args.out / "gpu.json").write_text(json.dumps(out, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
