"""Serving an export (``tunelab export RUN OUT``, then ``tunelab serve OUT``): the same
rendering and the same greedy text or class probabilities as serving the run; exports tunelab
cannot serve as trained are refused in one line naming the fix."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx
import openai
import pytest

import tunelab
from serve_helpers import Server, cli_env, make_run
from test_serve_engine import decode
from tunelab.data.rendering import read_rendering
from tunelab.errors import TunelabError
from tunelab.export import export_run
from tunelab.export_target import MARKER
from tunelab.inference import encode_messages
from tunelab.methods.artifacts import read_method_info
from tunelab.serving.engine import load_engine

LORA = {"name": "lora", "lora": {"r": 4}}
PROMPTS = ["hello", "good morning team"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    """A LoRA chat run and a LoRA classifier (head in modules_to_save), each merged."""
    root = tmp_path_factory.mktemp("serve_export")
    runs = {
        "chat": make_run(tiny_llama_dir, root / "chat", "causal_lm", LORA, 5),
        "cls": make_run(tiny_bert_dir, root / "cls", "classification", LORA, 6),
    }
    outs = {name: export_run(run, root / f"{name}-export") for name, run in runs.items()}
    return runs, outs, root


def test_export_holds_the_runs_rendering_and_a_record_of_what_it_is(exports):
    runs, outs, _ = exports
    for name in runs:
        assert read_rendering(outs[name]) == read_rendering(runs[name] / "model")
        info = read_method_info(outs[name])
        assert info["method"] == "full" and info["exported_from"]["method"] == "lora"
        assert info["task"] == read_method_info(runs[name] / "model")["task"]
        listed = json.loads((outs[name] / MARKER).read_text())["files"]
        assert {"tunelab_rendering.json", "tunelab_method.json"} <= set(listed)
    assert read_method_info(outs["cls"])["label_names"] == tunelab.load(runs["cls"]).label_names


def test_engine_on_a_merged_export_equals_the_run(exports):
    runs, outs, _ = exports
    run_engine, export_engine = load_engine(runs["chat"]), load_engine(outs["chat"])
    assert list(export_engine.slots) == ["chat-export"]  # merged: no base model to bypass to
    run_slot, export_slot = run_engine.slot("chat"), export_engine.slot("chat-export")
    message = [{"role": "user", "content": "hello"}]
    assert encode_messages(export_slot.loaded, message) == encode_messages(run_slot.loaded, message)
    assert export_slot.stop_ids == run_slot.stop_ids
    assert export_slot.continuous and export_slot.adapter is None
    served, _ = decode(export_engine, "chat-export", PROMPTS, max_tokens=24)
    assert served == decode(run_engine, "chat", PROMPTS, max_tokens=24)[0]
    assert len(set(served)) == 2 and all(served)


def test_tunelab_serve_export_dir_chat_and_classify(exports):
    """One live server: the chat export, and the classifier export beside it (--adapter)."""
    runs, outs, root = exports
    args = [str(outs["chat"]), "--name", "chat", "--adapter", f"cls={outs['cls']}"]
    server = Server(args, root / "server.log")
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        expected = tunelab.predict(tunelab.load(runs["chat"]), PROMPTS, max_new_tokens=32)
        for prompt, want in zip(PROMPTS, expected, strict=True):
            reply = client.chat.completions.create(
                model="chat",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=32,
                temperature=0,
            )
            assert reply.choices[0].message.content.strip() == want["generated"]
        texts = ["good morning team", "the market price", "vote election"]
        r = httpx.post(f"{server.url}/v1/classify", json={"model": "cls", "input": texts})
        assert r.status_code == 200, r.text
        want = tunelab.predict(tunelab.load(runs["cls"]), texts)
        for row, w in zip(r.json()["data"], want, strict=True):
            assert row["label"] == w["label"]
            assert row["probabilities"] == pytest.approx(w["probabilities"], abs=1e-5)
    finally:
        server.terminate()


def test_a_prompt_tuning_export_serves_as_its_run(tmp_path, tiny_llama_dir):
    run = make_run(tiny_llama_dir, tmp_path / "run", "causal_lm", {"name": "prompt_tuning"}, 7)
    out = export_run(run, tmp_path / "export")
    assert read_method_info(out)["method"] == "prompt_tuning"  # base + this adapter folder
    served, _ = decode(load_engine(out), "export", PROMPTS)
    assert served == decode(load_engine(run), "run", PROMPTS)[0]


def test_exports_tunelab_cannot_serve_are_refused_with_the_fix(exports, tmp_path, tiny_gpt2_dir):
    outs = exports[1]
    old = tmp_path / "old-export"  # an export written before exports held the rendering
    shutil.copytree(outs["chat"], old)
    (old / "tunelab_method.json").unlink()
    (old / "tunelab_rendering.json").unlink()
    with pytest.raises(TunelabError, match=r"older tunelab .*re-export it: tunelab export \S+ "):
        load_engine(old)
    cli = [sys.executable, "-m", "tunelab.cli", "serve", str(old), "--port", "0"]
    done = subprocess.run(cli, capture_output=True, text=True, env=cli_env(), timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "--overwrite" in lines[0], done.stderr
    with pytest.raises(TunelabError, match="plain Transformers model"):
        tunelab.load(tiny_gpt2_dir)
    method = {"name": "adapter", "adapter": {"kind": "houlsby"}}
    adapter_run = make_run(tiny_gpt2_dir, tmp_path / "adapter", "causal_lm", method, 8)
    coded = export_run(adapter_run, tmp_path / "adapter-export")
    with pytest.raises(TunelabError, match=r"generated modelling code.*serve the run itself"):
        load_engine(coded)
