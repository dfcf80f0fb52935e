"""A live ``tunelab serve`` on loopback, talked to with the official ``openai`` client.

One server for the module: LoRA run ``a`` (and its base model), LoRA run ``b`` and a DoRA run
as adapters on the same base, and a BERT classification run loaded beside them.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import tunelab
from serve_helpers import Server, make_run, metric

KEY = "sk-test-key"
PROMPTS = ["hello", "what is your name", "good morning team", "the market price today"]
LORA = {"name": "lora", "lora": {"r": 4}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    root = tmp_path_factory.mktemp("serve_api")
    return {
        "a": make_run(tiny_llama_dir, root / "a", "causal_lm", LORA, 1),
        "b": make_run(tiny_llama_dir, root / "b", "causal_lm", LORA, 2),
        "dora": make_run(
            tiny_llama_dir,
            root / "dora",
            "causal_lm",
            {"name": "lora", "lora": {"use_dora": True}},
            3,
        ),
        "cls": make_run(tiny_bert_dir, root / "cls", "classification", LORA, 4),
        "root": root,
    }


@pytest.fixture(scope="module")
def server(runs):
    args = [str(runs["a"]), "--api-key", KEY]
    for name in ("b", "dora", "cls"):
        args += ["--adapter", f"{name}={runs[name]}"]
    srv = Server(args, runs["root"] / "server.log")
    yield srv
    assert srv.terminate() in (0, -signal.SIGTERM), srv.stderr()  # uvicorn re-raises it


@pytest.fixture(scope="module")
def predicted(runs):
    """What ``tunelab predict`` (its Python API) generates for each prompt on runs a and b."""
    out = {}
    for name in ("a", "b"):
        rows = tunelab.predict(tunelab.load(runs[name]), PROMPTS, max_new_tokens=64)
        out[name] = [row["generated"] for row in rows]
    return out


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def chat(client, model, text, **kw):
    kw = {"max_tokens": 64, "temperature": 0, **kw}
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **kw
    )


def test_models_lists_the_run_its_base_and_the_adapters(client, runs, tiny_llama_dir):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"a", str(tiny_llama_dir), "b", "dora", "cls"}
    assert models["b"].model_extra["parent"] == "a"
    assert models["cls"].model_extra["task"] == "classification"


def test_two_adapters_greedy_equal_tunelab_predict(client, server, predicted, tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    for name in ("a", "b"):
        for text, expected in zip(PROMPTS, predicted[name], strict=True):
            out = chat(client, name, text)
            # predict strips the decoded text; the server returns it as decoded
            assert out.choices[0].message.content.strip() == expected
            ids = tok.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
            )["input_ids"]
            assert out.usage.prompt_tokens == len(ids)
            assert 1 <= out.usage.completion_tokens <= 64
            if out.choices[0].finish_reason == "length":
                assert out.usage.completion_tokens == 64
    assert predicted["a"] != predicted["b"]  # the adapters differ, so routing is tested


def test_base_model_name_runs_without_adapters(client, tiny_llama_dir, tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "hello"}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    with torch.no_grad():
        ref = base.generate(
            input_ids=ids, max_new_tokens=12, do_sample=False, eos_token_id=[2, 5], pad_token_id=3
        )
    new = ref[0, ids.shape[1] :].tolist()
    new = new[: next((i for i, t in enumerate(new) if t in (2, 5)), len(new))]
    out = chat(client, str(tiny_llama_dir), "hello", max_tokens=12)
    assert out.choices[0].message.content == tok.decode(new, skip_special_tokens=True)


def test_streaming_equals_the_whole_answer(client, server):
    for name in ("a", "dora"):
        whole = chat(client, name, "good morning team", max_tokens=20).choices[0].message.content
        stream = chat(
            client,
            name,
            "good morning team",
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
        assert chunks[-1].usage.completion_tokens >= 1
    body = {"model": "a", "prompt": "hello", "max_tokens": 5, "stream": True}
    with httpx.stream(
        "POST",
        f"{server.url}/v1/completions",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_completions_n_seed_and_stop(client):
    kw = {"model": "a", "prompt": ["hello", "the market"], "max_tokens": 10, "n": 2}
    first = client.completions.create(**kw, temperature=1.0, seed=7)
    again = client.completions.create(**kw, temperature=1.0, seed=7)
    assert [c.index for c in first.choices] == [0, 1, 2, 3]
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    other = client.completions.create(**kw, temperature=1.0, seed=8)
    assert [c.text for c in other.choices] != [c.text for c in first.choices]
    greedy = chat(client, "b", "what is your name", max_tokens=30).choices[0].message.content
    stop = greedy[4:7]
    cut = chat(client, "b", "what is your name", max_tokens=30, stop=[stop, "zzzz"])
    assert cut.choices[0].message.content == greedy[: greedy.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_classification(server, runs):
    texts = ["good morning team", "the market price", "vote election"]
    r = httpx.post(
        f"{server.url}/v1/classify",
        json={"model": "cls", "input": texts},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 200, r.text
    expected = tunelab.predict(tunelab.load(runs["cls"]), texts)
    for row, want in zip(r.json()["data"], expected, strict=True):
        assert row["label"] == want["label"]
        assert row["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
    assert r.json()["usage"]["prompt_tokens"] > len(texts)


def test_auth_is_required_everywhere_but_health(server):
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    for path in ("/v1/models", "/metrics", "/nowhere"):
        r = httpx.get(f"{server.url}{path}")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_limits_answer_openai_shaped_4xx(client, server):
    with pytest.raises(openai.BadRequestError) as long_prompt:
        chat(client, "a", "hello " * 300)
    assert long_prompt.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        chat(client, "a", "hello", max_tokens=100_000)
    with pytest.raises(openai.NotFoundError):
        chat(client, "missing", "hello")
    with pytest.raises(openai.BadRequestError, match="classify"):
        chat(client, "cls", "hello")
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = f"{server.url}/v1/chat/completions"
    cases = [
        (b"x" * (2 << 20), 413, None),
        (b'{"model": "a", "messages": [', 400, None),
        (
            json.dumps(
                {
                    "model": "a",
                    "messages": [{"role": "user", "content": "hi"}],
                    "temperature": "hot",
                }
            ),
            400,
            "temperature",
        ),
        (
            json.dumps({"model": "a", "messages": [{"role": "robot", "content": "hi"}]}),
            400,
            "messages.0.role",
        ),
        (json.dumps({"model": 5, "messages": []}), 400, "model"),
    ]
    for body, status, param in cases:
        r = httpx.post(url, content=body, headers=auth)
        assert r.status_code == status, r.text
        assert r.json()["error"]["message"]
        if param:
            assert r.json()["error"]["param"] == param


def test_concurrent_load_is_batched_and_correct(client, server, predicted, tiny_llama_dir):
    names = ["a", "b", "dora", str(tiny_llama_dir)]
    expected = dict(zip([("a", p) for p in PROMPTS], predicted["a"], strict=True))
    expected |= dict(zip([("b", p) for p in PROMPTS], predicted["b"], strict=True))
    for name in names[2:]:
        for p in PROMPTS:
            expected[(name, p)] = chat(client, name, p).choices[0].message.content.strip()
    before = _batches(server)
    jobs = [(names[i % 4], PROMPTS[(i // 4) % 4]) for i in range(64)]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(job):
        try:
            return chat(client, *job).choices[0].message.content.strip()
        except BaseException as exc:
            with lock:
                errors.append(exc)
            raise

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, jobs, timeout=240))
    assert not errors
    assert results == [expected[job] for job in jobs]
    count, rows, singles = (a - b for a, b in zip(_batches(server), before, strict=True))
    assert rows / count > 1.5 and singles < count  # requests were decoded together


def _batches(server) -> tuple[float, float, float]:
    """Decoding steps (or batches), the rows they decoded, and the steps of a single row."""
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    single = float(text.split('tunelab_batch_rows_bucket{le="1"} ')[1].split()[0])
    return metric(text, "tunelab_batch_rows_count"), metric(text, "tunelab_batch_rows_sum"), single


def test_metrics_are_prometheus_text(server):
    r = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert metric(text, "tunelab_prompt_tokens_total") > 0
    assert metric(text, "tunelab_completion_tokens_total") > 0
    assert metric(text, "tunelab_queue_length") == 0
    assert 'tunelab_requests_total{route="/v1/chat/completions",code="200"}' in text
    assert 'tunelab_request_latency_seconds_bucket{route="/v1/chat/completions",le="+Inf"}' in text


def _fuzz_bodies(rng: random.Random, count: int) -> list[tuple[str, str, bytes]]:
    """(method, path, body) cases: broken bytes and JSON, wrong shapes, hostile values."""
    valid = {"model": "a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    values = [
        None,
        True,
        -1,
        0,
        2**70,
        -(2**70),
        1e308,
        "x" * 5000,
        "",
        [],
        {},
        [1, "a"],
        {"a": {"b": []}},
        "\udc80"[:0] + "\u0000\ufffd",
        float("nan"),
        0.5,
        "a",
    ]
    keys = [
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "stream",
        "prompt",
        "input",
        "stream_options",
        "max_completion_tokens",
    ]
    paths = ["/v1/chat/completions", "/v1/completions", "/v1/classify"]
    cases: list[tuple[str, str, bytes]] = []
    for i in range(count):
        kind = i % 6
        path = rng.choice(paths)
        if kind == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        elif kind == 1:
            body = json.dumps(valid).encode()[: rng.randrange(1, 60)]
        elif kind == 2:
            body = ("[" * rng.choice([10, 1000, 100_000])).encode()
        elif kind == 3:
            case = dict(valid)
            case[rng.choice(keys)] = rng.choice(values)
            body = json.dumps(case, allow_nan=True).encode()
        elif kind == 4:
            case = dict(valid)
            case["messages"] = [
                {"role": rng.choice(["user", "tool", 3]), "content": rng.choice(values)}
            ]
            body = json.dumps(case, allow_nan=True).encode()
        else:
            cases.append(
                (rng.choice(["GET", "PUT", "DELETE"]), rng.choice([*paths, "/x", "/v1"]), b"")
            )
            continue
        cases.append(("POST", path, body))
    return cases


def test_fuzz_then_still_correct(client, server, predicted):
    rng = random.Random(0)
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    deadline = time.monotonic() + 90
    statuses = []
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as http:
        for method, path, body in _fuzz_bodies(rng, 300):
            assert time.monotonic() < deadline, "fuzzing took too long"
            r = http.request(method, path, content=body)
            statuses.append(r.status_code)
            assert r.status_code < 500, (method, path, body[:200], r.text)
            if r.status_code >= 400:
                assert r.json()["error"]["message"]
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"POST /v1/completions HTTP/1.1\r\nContent-Length: 50\r\n\r\n{",
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(raw)
    assert statuses.count(200) < len(statuses) / 2  # most cases are malformed
    assert chat(client, "a", PROMPTS[0]).choices[0].message.content.strip() == predicted["a"][0]
    assert server.proc.poll() is None
