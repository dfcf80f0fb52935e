"""Serving throughput: tunelab serve vs ``transformers serve`` (continuous batching) vs a
one-request-at-a-time ``generate`` loop, and tunelab serve with 4 LoRA adapters mixed in one
batch vs a single adapter.

Every system serves the same merged SmolLM2-135M fine-tune over HTTP on loopback and gets the
same chat requests (greedy, ``max_tokens`` new tokens at most) from the same asyncio client at
concurrency 1, 4 and 16 (at least 4 requests per level, ``--per-client`` per client). Every
server runs with the same torch thread count (``--threads``, default 1: on a shared machine
more threads per process spin against each other). Output tokens/s counts the completion
tokens each server reports in ``usage``; latency is request to full answer. Each server is
started, warmed up (4 untimed requests), measured and stopped in turn; the order of systems
reverses every round and the table gives the median over rounds, with ratios (the machine
may be shared).

    nice -n 5 python benchmarks/serve_throughput.py            # about 10-15 minutes on 2 cores
    python benchmarks/serve_throughput.py --run runs/my-smollm2-lora --rounds 1

The fine-tune: ``--run`` (a LoRA run of SmolLM2), else a 3-step run of
``examples/smollm2-chat-lora.yaml`` trained once into the work directory. It is merged with
``tunelab export`` for the three-way comparison. The 4 adapters are the run's own and three
copies whose LoRA weights carry seeded noise (different weights per row, the same shapes),
loaded with ``tunelab serve RUN --adapter NAME=DIR``; "single" sends every request to one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
}.items():
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "smollm2-chat-lora.yaml"
ADAPTERS = ("a", "b", "c", "d")
TOPICS = (
    "the history of the bicycle",
    "how volcanoes form",
    "why the sky is blue",
    "the rules of chess",
    "how bread rises",
    "the life of honeybees",
    "how a compass works",
    "the water cycle",
)


@dataclass
class Server:
    """A server subprocess and the ``model`` name its requests carry."""

    proc: subprocess.Popen
    url: str
    model: str


THREADS = {"n": 1}  # --threads: torch threads of every server


def env() -> dict[str, str]:
    threads = str(THREADS["n"])
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }


def tunelab_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunelab.cli", *args]


def prepare(work: Path, run: Path | None) -> tuple[Path, Path, dict[str, Path]]:
    """The LoRA run (trained once when not given), its merged export (which every system
    serves: ``tunelab serve`` takes the export folder) and 4 adapter dirs."""
    work.mkdir(parents=True, exist_ok=True)
    if run is None:
        run = work / "finetune"
        if not (run / "model" / "adapter_model.safetensors").is_file():
            print("training a 3-step SmolLM2 LoRA fine-tune ...", flush=True)
            overrides = [
                "train.max_steps=3",
                "train.warmup_steps=1",
                "train.eval_every=null",
                "eval.at_end=false",
                f"output.dir={run}",
            ]
            subprocess.run(tunelab_cmd("train", str(CONFIG), *overrides), check=True, env=env())
    merged = work / "merged"
    if not (merged / "tunelab_method.json").is_file():  # none yet, or an older export
        print("merging it with tunelab export ...", flush=True)
        cmd = tunelab_cmd("export", str(run), str(merged), "--overwrite")
        subprocess.run(cmd, check=True, env=env())
    adapters = {ADAPTERS[0]: run}
    for seed, name in enumerate(ADAPTERS[1:], start=1):
        adapters[name] = noised_copy(run / "model", work / f"adapter-{name}" / "model", seed)
    return run, merged, adapters


def noised_copy(source: Path, target: Path, seed: int) -> Path:
    """A copy of a LoRA artifact whose adapter weights get seeded noise (a distinct adapter)."""
    if (target / "adapter_model.safetensors").is_file():
        return target.parent
    import torch
    from safetensors.torch import load_file, save_file

    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    weights = load_file(str(source / "adapter_model.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    noised = {
        key: value + 0.01 * torch.randn(value.shape, generator=gen, dtype=value.dtype)
        for key, value in weights.items()
    }
    save_file(noised, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
    return target.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(system: str, merged: Path, run: Path, adapters: dict[str, Path], log: Path) -> Server:
    """Start one system's server and wait until it answers ``/health``."""
    port = free_port()
    if system == "tunelab":
        cmd = tunelab_cmd("serve", str(merged), "--name", "merged", "--port", str(port))
        model = "merged"
    elif system == "transformers":
        cmd = [str(Path(sys.executable).parent / "transformers"), "serve", str(merged)]
        cmd += ["--continuous-batching", "--device", "cpu", "--port", str(port)]
        cmd += ["--host", "127.0.0.1"]
        model = str(merged)
    elif system == "loop":
        cmd = [sys.executable, __file__, "--loop-server", str(merged), "--port", str(port)]
        model = "merged"
    else:  # adapters
        cmd = tunelab_cmd("serve", str(run), "--name", ADAPTERS[0], "--port", str(port))
        for name in ADAPTERS[1:]:
            cmd += ["--adapter", f"{name}={adapters[name]}"]
        model = ADAPTERS[0]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env())
    server = Server(proc, f"http://127.0.0.1:{port}", model)
    import httpx

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{system} server exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"{server.url}/health", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(1)
    stop(server)
    raise SystemExit(f"{system} server did not come up in 600 s; see {log}")


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(60)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def request_body(model: str, index: int, max_tokens: int) -> dict[str, Any]:
    topic = TOPICS[index % len(TOPICS)]
    return {
        "model": model,
        "messages": [{"role": "user", "content": f"Write a short essay about {topic}."}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


async def load(
    url: str, models: list[str], concurrency: int, requests: int, max_tokens: int
) -> dict[str, Any]:
    """``requests`` chat requests from ``concurrency`` clients; tokens/s and latencies."""
    import httpx

    latencies: list[float] = []
    tokens = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal tokens
        while not queue.empty():
            i = queue.get_nowait()
            body = request_body(models[i % len(models)], i, max_tokens)
            begin = time.monotonic()
            answer = await http.post(f"{url}/v1/chat/completions", json=body)
            latencies.append(time.monotonic() - begin)
            answer.raise_for_status()
            tokens += answer.json()["usage"]["completion_tokens"]

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=1800, limits=limits) as http:
        begin = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.monotonic() - begin
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "tokens_per_s": tokens / wall,
        "p50_s": statistics.median(ordered),
        "p95_s": p95,
        "tokens": tokens,
        "wall_s": wall,
    }


def measure(
    system: str, server: Server, levels: list[int], per_client: int, max_tokens: int, flip: bool
) -> dict[str, dict[str, Any]]:
    """One system's results by workload (``c1``, ``c4``, ... or ``single``/``mixed``, in the
    other order when ``flip``)."""
    top = max(levels)
    warm = min(top, 4)
    if system == "adapters":
        asyncio.run(load(server.url, list(ADAPTERS), warm, warm, 8))  # warm-up
        workloads = [("single", [ADAPTERS[0]]), ("mixed", list(ADAPTERS))]
        return {
            workload: asyncio.run(load(server.url, models, top, top * per_client, max_tokens))
            for workload, models in (workloads[::-1] if flip else workloads)
        }
    asyncio.run(load(server.url, [server.model], warm, warm, 8))  # warm-up
    return {
        f"c{c}": asyncio.run(
            load(server.url, [server.model], c, max(c * per_client, 4), max_tokens)
        )
        for c in levels
    }


def report(results: dict[str, list[dict[str, dict[str, Any]]]], levels: list[int]) -> str:
    """The markdown table (medians over rounds) and the ratios against the targets."""

    def med(system: str, workload: str, key: str) -> float:
        return statistics.median(r[workload][key] for r in results[system])

    lines = [
        "| system | concurrency | output tokens/s | p50 latency (s) | p95 latency (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for system in ("tunelab", "transformers", "loop"):
        for c in levels:
            w = f"c{c}"
            lines.append(
                f"| {system} | {c} | {med(system, w, 'tokens_per_s'):.1f} | "
                f"{med(system, w, 'p50_s'):.2f} | {med(system, w, 'p95_s'):.2f} |"
            )
    top = max(levels)
    for workload in ("single", "mixed"):
        lines.append(
            f"| tunelab, 4 adapters loaded, {workload} | {top} | "
            f"{med('adapters', workload, 'tokens_per_s'):.1f} | "
            f"{med('adapters', workload, 'p50_s'):.2f} | {med('adapters', workload, 'p95_s'):.2f} |"
        )
    ours = {c: med("tunelab", f"c{c}", "tokens_per_s") for c in levels}
    lines.append("")
    for c in levels:
        vs_tf = ours[c] / med("transformers", f"c{c}", "tokens_per_s")
        vs_loop = ours[c] / med("loop", f"c{c}", "tokens_per_s")
        lines.append(
            f"- concurrency {c}: tunelab / transformers serve {vs_tf:.2f}x, "
            f"tunelab / one-at-a-time loop {vs_loop:.2f}x"
        )
    mixed = med("adapters", "mixed", "tokens_per_s") / med("adapters", "single", "tokens_per_s")
    lines.append(f"- 4 mixed adapters / single adapter (concurrency {top}): {mixed:.2f}x")
    tf_ratio = ours[top] / med("transformers", f"c{top}", "tokens_per_s")
    loop_ratio = ours[top] / med("loop", f"c{top}", "tokens_per_s")
    lines.append(
        f"- targets: >= 1.0x transformers serve at {top}: {'met' if tf_ratio >= 1 else 'MISSED'}; "
        f">= 3x the loop at {top}: {'met' if loop_ratio >= 3 else 'MISSED'}; "
        f"mixed >= 0.7x single: {'met' if mixed >= 0.7 else 'MISSED'}"
    )
    return "\n".join(lines)


def loop_server(merged: Path, port: int) -> None:
    """The baseline: an HTTP server that answers one request at a time with ``generate``."""
    import threading

    import torch
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.decoding import stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged).eval()
    stops = stop_token_ids(tokenizer)
    lock = threading.Lock()

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        ids = tokenizer.apply_chat_template(
            body["messages"], add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )["input_ids"]
        with lock, torch.no_grad():  # one request at a time
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=body["max_tokens"],
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id or stops[0],
            )
        new = out[0, ids.shape[1] :].tolist()
        text = tokenizer.decode(new, skip_special_tokens=True)
        usage = {"prompt_tokens": ids.shape[1], "completion_tokens": len(new)}
        return {"choices": [{"index": 0, "message": {"content": text}}], "usage": usage}

    async def health(_: Any) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def chat(request: Any) -> JSONResponse:
        return JSONResponse(await asyncio.to_thread(answer, await request.json()))

    app = Starlette(
        routes=[Route("/health", health), Route("/v1/chat/completions", chat, methods=["POST"])]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="A SmolLM2 LoRA run (default: train one).")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/tunelab-serve-bench"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", default="1,4,16", help="Comma-separated levels.")
    parser.add_argument("--per-client", type=int, default=1, help="Requests per client.")
    parser.add_argument(
        "--threads", type=int, default=1, help="OMP_NUM_THREADS of every server (same for all)."
    )
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--systems", default="tunelab,transformers,loop,adapters")
    parser.add_argument("--loop-server", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop_server:
        loop_server(args.loop_server, args.port)
        return
    THREADS["n"] = args.threads
    levels = [int(c) for c in args.concurrency.split(",")]
    run, merged, adapters = prepare(args.work_dir, args.run)
    systems = args.systems.split(",")
    results: dict[str, list[dict[str, dict[str, Any]]]] = {s: [] for s in systems}
    log = args.work_dir / "servers.log"
    for round_ in range(args.rounds):
        for system in systems if round_ % 2 == 0 else systems[::-1]:
            began = time.monotonic()
            server = start(system, merged, run, adapters, log)
            try:
                results[system].append(
                    measure(
                        system, server, levels, args.per_client, args.max_tokens, round_ % 2 == 1
                    )
                )
            finally:
                stop(server)
            took = time.monotonic() - began
            print(f"round {round_ + 1}: {system} done in {took:.0f} s", flush=True)
            print(json.dumps(results[system][-1]), flush=True)
            out = args.work_dir / "results.json"
            out.write_text(json.dumps(results, indent=1), encoding="utf-8")
        if set(systems) >= {"tunelab", "transformers", "loop", "adapters"}:
            print(f"after round {round_ + 1}:\n{report(results, levels)}", flush=True)
    print(f"raw results: {out}")


if __name__ == "__main__":
    main()
