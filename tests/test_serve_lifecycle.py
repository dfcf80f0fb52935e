"""Overload, disconnects and shutdown of a live server that decodes one row at a time.

``--max-batch 1 --max-queue 1``: one request decodes, one waits, the rest are refused. Every
decoding step takes 10 ms longer (``TUNELAB_TEST_STEP_SECONDS``, a slower device), so a long
request decodes for at least 2 s however fast the machine: on a quiet one the tiny model
finished before the next request could be seen waiting.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serve_helpers import Server, make_run, metric
from tunelab.serving.worker import STEP_DELAY_ENV

LONG = 200  # new tokens of a long request (the tiny model's limit is 256 positions)
BODY = {
    "model": "run",
    "messages": [{"role": "user", "content": "hello"}],
    "max_tokens": LONG,
    "temperature": 0,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_llama_dir):
    root = tmp_path_factory.mktemp("serve_life")
    run = make_run(tiny_llama_dir, root / "run", "causal_lm", {"name": "lora"}, 9)
    args = [str(run), "--max-batch", "1", "--max-queue", "1", "--drain-seconds", "300"]
    srv = Server(args, root / "server.log", env={STEP_DELAY_ENV: "0.01"})
    yield srv
    srv.terminate()


def _metrics(server) -> str:
    return httpx.get(f"{server.url}/metrics").text


def _wait(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _leave_raw(server, body: dict, until) -> float:
    """Send ``body`` on a raw socket, wait for ``until`` (the server's metrics) and close it;
    the decoding steps counted by then."""
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(head.encode() + data)
        _wait(until, timeout=300)
        return metric(_metrics(server), "tunelab_batch_rows_count")


@pytest.fixture(scope="module")
def long_answer(server):
    r = httpx.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=120)
    assert r.status_code == 200
    return r.json()


def test_long_request_runs_to_its_length(long_answer):
    assert long_answer["choices"][0]["finish_reason"] == "length"  # no EOS: the tests below need it
    assert long_answer["usage"]["completion_tokens"] == LONG


def test_the_server_log_has_no_bitsandbytes_notice(server, long_answer):
    assert "gemm_4bit_forward" not in server.stderr()  # tests/test_library_logs.py


def test_a_full_queue_answers_503(server, long_answer):
    expected = long_answer
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: httpx.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=120),
                range(8),
            )
        )
    refused = [r for r in answers if r.status_code == 503]
    served = [r for r in answers if r.status_code == 200]
    assert refused and served and len(refused) + len(served) == 8
    assert refused[0].json()["error"]["code"] == "server_overloaded"
    assert refused[0].headers["retry-after"] == "1"
    content = expected["choices"][0]["message"]["content"]
    assert all(r.json()["choices"][0]["message"]["content"] == content for r in served)


def test_a_client_leaving_mid_stream_frees_its_slot(server):
    before = metric(_metrics(server), "tunelab_cancelled_total")
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json={**BODY, "stream": True}, timeout=60
    ) as r:
        lines = (line for line in r.iter_lines() if line)
        assert next(lines).startswith("data: ")  # the role chunk
        assert '"content"' in next(lines)  # decoding has started; leave now
    _wait(lambda: metric(_metrics(server), "tunelab_cancelled_total") == before + 1)
    _wait(lambda: metric(_metrics(server), "tunelab_batch_running_rows") == 0)
    short = {**BODY, "max_tokens": 3}
    assert (
        httpx.post(f"{server.url}/v1/chat/completions", json=short, timeout=60).status_code == 200
    )


def test_a_client_leaving_before_a_plain_answer_cancels_it(server):
    """A queued non-streamed request whose client closes the connection is dropped, never
    decoded. Every wait is on an event the server reports, with a deadline a loaded machine
    meets."""
    text = _metrics(server)
    cancelled = metric(text, "tunelab_cancelled_total")
    tokens = metric(text, "tunelab_completion_tokens_total")
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json={**BODY, "stream": True}, timeout=300
    ) as busy:  # holds the only decoding row
        lines = (line for line in busy.iter_lines() if line)
        assert next(lines).startswith("data: ")
        _leave_raw(server, BODY, lambda: metric(_metrics(server), "tunelab_queue_length") == 1)
        _wait(lambda: metric(_metrics(server), "tunelab_cancelled_total") > cancelled, 300)
        rest = list(lines)  # the busy stream runs to its end
    assert rest[-1] == "data: [DONE]"
    _wait(lambda: metric(_metrics(server), "tunelab_batch_running_rows") == 0, 300)
    text = _metrics(server)
    assert metric(text, "tunelab_queue_length") == 0
    assert metric(text, "tunelab_cancelled_total") == cancelled + 1
    assert metric(text, "tunelab_completion_tokens_total") == tokens + LONG  # the busy one only
    short = {**BODY, "max_tokens": 3}
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=short, timeout=300)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 3


def test_a_client_leaving_during_a_plain_answer_stops_its_decoding(server):
    """A non-streamed request whose client leaves mid-decoding is cancelled within a few steps:
    its tokens arriving every step must not hide the disconnect until the answer is complete."""
    text = _metrics(server)
    cancelled = metric(text, "tunelab_cancelled_total")
    tokens = metric(text, "tunelab_completion_tokens_total")
    steps = _leave_raw(server, BODY, lambda: metric(_metrics(server), "tunelab_batch_running_rows"))

    def settled() -> bool:  # cancelled, or (the defect) decoded to the end
        text = _metrics(server)
        return metric(text, "tunelab_batch_running_rows") == 0 and (
            metric(text, "tunelab_cancelled_total") > cancelled
            or metric(text, "tunelab_completion_tokens_total") > tokens
        )

    _wait(settled, timeout=300)
    text = _metrics(server)
    assert metric(text, "tunelab_cancelled_total") == cancelled + 1
    assert metric(text, "tunelab_completion_tokens_total") == tokens  # not answered
    assert metric(text, "tunelab_batch_rows_count") - steps < LONG // 4  # stopped soon


def test_sigterm_finishes_in_flight_requests_then_exits(server):
    answers: list[httpx.Response] = []

    def ask() -> None:
        answers.append(httpx.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=300))

    threads = [threading.Thread(target=ask) for _ in range(2)]  # one decodes, one queued
    for thread in threads:
        thread.start()

    def both_in() -> bool:  # one decodes, the other waits in the queue
        text = _metrics(server)
        return (
            metric(text, "tunelab_batch_running_rows") == 1 == metric(text, "tunelab_queue_length")
        )

    _wait(both_in)
    server.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(300)
    assert [r.status_code for r in answers] == [200, 200]
    assert all(r.json()["usage"]["completion_tokens"] == LONG for r in answers)
    assert server.proc.wait(60) in (0, -signal.SIGTERM)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health")
