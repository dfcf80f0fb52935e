"""What `tunelab train` prints: whole progress lines off a terminal, a line before each slow
phase, the template in use, and no DeepSpeed import (nor its warning) without DeepSpeed."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from train_helpers import lm_raw
from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.models import ensure_gguf_cache, load_tokenizer
from tunelab.testing import corpus_lines

# runs `tunelab train CONFIG`, then says whether deepspeed was imported in that process
RUN_CLI = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: print('deepspeed imported:', 'deepspeed' in sys.modules))\n"
    "sys.argv = ['tunelab', 'train', sys.argv[1]]\n"
    "runpy.run_module('tunelab.cli', run_name='__main__')\n"
)
PROGRESS = re.compile(
    r"^step (\d+)/(\d+)  epoch \d+\.\d\d  loss \d+\.\d{4}  lr \d\.\d\de-\d\d  "
    r"tok/s [\d,]+  elapsed \d+:\d\d:\d\d  eta \d+:\d\d:\d\d$"
)


@pytest.fixture(scope="module")
def piped_run(tiny_llama_dir, tmp_path_factory):
    """A 3-step instruction-tuning run of the CLI with stdout and stderr to pipes."""
    root = tmp_path_factory.mktemp("piped")
    lines = [" ".join(line.split()[:5]) for line in corpus_lines(40, seed=5)]
    with (root / "inst.jsonl").open("w", encoding="utf-8") as fh:
        for a, b in zip(lines[::2], lines[1::2], strict=True):
            fh.write(json.dumps({"instruction": a, "output": b}) + "\n")
    raw = lm_raw(tiny_llama_dir, root / "inst.jsonl", root / "run", {"max_steps": 3})
    raw["data"]["format"] = "instruction"
    (root / "run.yaml").write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TERM")}
    done = subprocess.run(
        [sys.executable, "-c", RUN_CLI, str(root / "run.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_progress_off_a_terminal_is_whole_plain_lines(piped_run):
    out = piped_run.stdout
    progress = [line for line in out.splitlines() if line.startswith("step ")]
    assert progress, out
    for line in progress:
        assert PROGRESS.match(line), line
    steps = [PROGRESS.match(line).groups() for line in progress]
    assert steps[0] == ("1", "3") and steps[-1] == ("3", "3")  # first and last always shown
    assert "…" not in out and "━" not in out  # no truncated live bar
    assert re.search(r"train throughput\W+[\d,]+ tok/s", out), out  # text: tokens


def test_a_run_without_input_tokens_says_examples_per_second(tmp_path):
    """Speech and image runs count examples (their inputs have no tokens): ex/s, not tok/s."""
    from rich.console import Console

    from tunelab.train.monitor import PlainProgress, print_summary

    out = io.StringIO()
    console = Console(file=out, width=200)
    PlainProgress(console, 4, 0, 1, "examples").advance(
        1, {"epoch": 0.25, "loss": 1.5, "lr": 1e-3, "tokens_per_s": 1.2345}
    )
    summary = {
        "wall_time_s": 8.0, "steps": 4, "tokens_per_s": 1.2345, "throughput_unit": "examples",
        "peak_memory_mb": 100.0, "trainable_params": 10, "total_params": 100,
        "best_metric_name": "eval_loss", "best_metric": None, "best_step": None,
    }  # fmt: skip
    print_summary(console, summary, tmp_path)
    text = out.getvalue()
    assert "ex/s 1.23  elapsed" in text
    assert re.search(r"train throughput\W+1\.23 ex/s", text) and "tok/s" not in text


def test_slow_phases_and_template_are_announced(piped_run):
    err, out = piped_run.stderr, piped_run.stdout
    assert re.search(r"^tokenising 20 rows \(train \d+, validation \d+, test \d+\)$", err, re.M)
    assert re.search(r"^loading model .*tiny_llama", err, re.M), err
    assert "template: the tokenizer's chat template (data.template: auto)" in out
    # in order: the data is prepared before the model loads, all before the first step
    assert err.index("tokenising") < err.index("loading model")
    assert out.index("template:") < out.index("step 1/3")


def test_no_deepspeed_import_without_deepspeed(piped_run):
    assert "deepspeed imported: False" in piped_run.stdout
    assert "real_accelerator" not in piped_run.stderr
    assert "Setting accelerator" not in piped_run.stderr


def test_template_note_per_format(tiny_llama_dir, plain_tokenizer_dir, tmp_path):
    from tunelab.train.startup import template_note

    raw = lm_raw(tiny_llama_dir, tmp_path / "d.jsonl", tmp_path / "run")
    chat_tok = load_tokenizer(load_config(raw).model)
    raw["model"]["tokenizer"] = str(plain_tokenizer_dir)
    plain_tok = load_tokenizer(load_config(raw).model)
    assert template_note(load_config(raw), chat_tok).startswith("template: none (data.format text")
    raw["data"]["format"] = "instruction"
    assert "tokenizer's chat template" in template_note(load_config(raw), chat_tok)
    note = template_note(load_config(raw), plain_tok)
    assert note.startswith("template: tunelab's default template") and "has none" in note
    raw["data"]["template"] = "default"
    assert "data.template: default" in template_note(load_config(raw), chat_tok)
    raw["data"] = {**raw["data"], "format": "classification", "template": "auto"}
    assert template_note(load_config(raw), chat_tok) is None


def test_gguf_dequantising_is_announced_first(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "broken.gguf").write_bytes(b"not a gguf file")
    raw = lm_raw(tmp_path / "model", tmp_path / "d.jsonl", tmp_path / "run")
    raw["model"] |= {"gguf_file": "broken.gguf", "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(TunelabError, match="cannot be read"):
        ensure_gguf_cache(load_config(raw).model)
    err = capsys.readouterr().err
    assert re.search(r"^dequantising GGUF file .*broken\.gguf once into cache .*cache", err, re.M)
    assert "takes a while the first time" in err
