"""The systems ``train_throughput.py`` compares, each run in its own subprocess.

- tunelab: ``tunelab.train.train`` (the real loop) on its defaults (variants turn one off);
- HF Trainer + PEFT: dynamic padding, random batches (its default) or length-grouped ones
  (``train_sampling_strategy="group_by_length"``);
- TRL SFTTrainer: BFD packing, padding-free.

Every worker times its optimizer steps the same way (the start of the first step to the end
of each step, after the GPU finishes its queued work) and counts what each step held. A spec
may name ``device`` (cpu | cuda), ``precision`` (fp32 | bf16), ``dtype`` (of the loaded
weights) and ``attn`` (the attention kernel) for every system alike; the defaults are the CPU
benchmark's (fp32 on CPU, Transformers' default kernel).
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

# tunelab's defaults that the baselines are given too, so that every system trains the same
# model the same way (tunelab.config: TrainConfig, LoraSettings)
LR = 2e-4
LORA = {"r": 8, "alpha": 16.0, "dropout": 0.05}
SEED = 42


def now() -> float:
    """``time.perf_counter()`` once the GPU (when one is in use) has finished its queued work."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


class StepLog:
    """Per optimizer step: end time, loss, loss-bearing tokens, real tokens, samples."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.batches: list[tuple[int, int, int]] = []  # per step: loss tokens, tokens, samples
        self.ends: list[float] = []
        self.losses: dict[int, float] = {}

    def count(self, batch: dict[str, Any]) -> None:
        labels = batch["labels"]
        if labels.dim() == 1:  # classification: the loss-bearing items are the examples
            tokens = int(batch["attention_mask"].sum())
            self.batches.append((labels.shape[0], tokens, labels.shape[0]))
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
        def on_step_begin(self, args, state, control, **kwargs):
            if log.start is None:
                log.start = now()

        def on_step_end(self, args, state, control, **kwargs):
            log.ends.append(now())

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


def _training_args(spec: dict[str, Any], batch: int, **extra: Any) -> dict[str, Any]:
    """HF arguments matching tunelab's defaults: AdamW, lr 2e-4, cosine, no warmup, no weight
    decay, clipping at 1.0, one epoch; the spec's device and precision (default: CPU, fp32)."""
    out, precision = spec["out_dir"], spec.get("precision", "fp32")
    return {
        "output_dir": out,
        "per_device_train_batch_size": batch,
        "num_train_epochs": 1,
        "learning_rate": LR,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "optim": "adamw_torch",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": SEED,
        "use_cpu": spec.get("device", "cpu") == "cpu",
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        **extra,
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


def _load_options(spec: dict[str, Any]) -> dict[str, Any]:
    """``from_pretrained`` options of a causal LM: the spec's weight dtype and attention kernel."""
    options: dict[str, Any] = {"dtype": spec.get("dtype", "float32")}
    if spec.get("attn"):
        options["attn_implementation"] = spec["attn"]
    return options


def _rows(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(spec["examples"]).read_text().splitlines()]


def worker_hf(spec: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """HF Trainer (+ PEFT LoRA) with dynamic padding; ``hf-grouped``: length-grouped batches."""
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
    rows = _rows(spec)
    if spec["workload"] == "minilm":
        model = AutoModelForSequenceClassification.from_pretrained(
            spec["model_dir"], num_labels=len(spec["label_names"])
        )
        collate, task = DataCollatorWithPadding(tok), "SEQ_CLS"
    else:
        model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], **_load_options(spec))
        collate = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
        task = "CAUSAL_LM"
    for row in rows:
        row["attention_mask"] = [1] * len(row["input_ids"])
    if spec["method"] == "lora":
        model = get_peft_model(model, _peft_config(task))
    log = StepLog()
    strategy = "group_by_length" if spec["system"] == "hf-grouped" else "random"
    args = _training_args(spec, spec["batch"], train_sampling_strategy=strategy)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**args),
        train_dataset=Dataset.from_list(rows),
        data_collator=_counting(collate, log),
        callbacks=[_hf_callback(log)],
    )
    trainer.train()
    return {"start": log.start, "steps": log.steps()}, trainer.model


def worker_trl(spec: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """TRL SFTTrainer with BFD packing (padding-free) and PEFT LoRA."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], **_load_options(spec))
    args = SFTConfig(
        **_training_args(spec, spec["packed_rows"]),
        packing=True,
        packing_strategy="bfd",
        max_length=spec["max_length"],
    )
    log = StepLog()
    peft = _peft_config("CAUSAL_LM") if spec["method"] == "lora" else None
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(_rows(spec)),
        processing_class=tok,
        peft_config=peft,
        callbacks=[_hf_callback(log)],
    )
    trainer.data_collator = _counting(trainer.data_collator, log)
    trainer.train()
    return {"start": log.start, "steps": log.steps()}, trainer.model


def timed_train(spec: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """tunelab's real training loop through its Python API (``tunelab.train.train``); its
    step times and the train result.

    A wrapper around the loop's ``train_step`` records when the first step starts, when each
    optimizer step ends and what its micro-batches held, as the HF callbacks do.
    """
    import tunelab.train.loop as loop_module
    from tunelab import load_config
    from tunelab.train import train

    log: list[dict[str, float]] = []
    start: list[float] = []
    train_step = loop_module.train_step

    def timed_step(loop: Any, micro: list[dict[str, Any]]) -> Any:
        start.append(now())
        result = train_step(loop, micro)
        tokens, samples = zip(*(batch_sizes(b) for b in micro), strict=True)
        log.append(
            {
                "t": now(),
                "loss": result.loss,
                "loss_tokens": result.loss_items,  # labels[:, 1:] != -100, as for HF and TRL
                "tokens": sum(tokens),
                "samples": sum(samples),
            }
        )
        return result

    loop_module.train_step = timed_step
    result = train(load_config(spec["config"]))
    return {"start": start[0], "steps": log}, result


def worker_tunelab(spec: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """tunelab on its defaults (:func:`timed_train`) and the trained model, loaded back."""
    import tunelab

    timing, result = timed_train(spec)
    return timing, tunelab.load(result.model_dir).model


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


def worker_main(spec_path: str) -> None:
    """Entry point of one subprocess: run the job, add peak RSS, write the result JSON."""
    spec = json.loads(Path(spec_path).read_text())
    system = spec["system"]
    worker = worker_tunelab if system.startswith("tunelab") else WORKERS[system]
    result, model = worker(spec)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if spec.get("device") == "cuda":
        import torch

        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        model = model.to("cuda")
    if spec.get("heldout"):
        result["heldout_loss"] = heldout_loss(model, Path(spec["heldout"]), spec.get("precision"))
    Path(spec["result"]).write_text(json.dumps(result))


WORKERS = {"hf": worker_hf, "hf-grouped": worker_hf, "trl": worker_trl}


def heldout_loss(model: Any, path: Path, precision: str | None = None) -> float:
    """Token-weighted causal-LM loss of a trained model on the held-out examples (one at a
    time, no padding, on the model's device; under bf16 autocast for bf16 runs), computed the
    same way for every system."""
    import torch
    import torch.nn.functional as F

    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad(), autocast:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            ids = torch.tensor([row["input_ids"]], device=device)
            logits = model(input_ids=ids).logits[0, :-1].float()
            target = torch.tensor(row["labels"][1:], device=device)
            total += F.cross_entropy(logits, target, ignore_index=-100, reduction="sum").item()
            count += int((target != -100).sum())
    return total / count
