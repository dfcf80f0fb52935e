"""The serving engine in-process: every method renders and decodes as ``tunelab predict`` does,
mixed-adapter batches equal one adapter at a time, seeded sampling, stop strings, the queue."""

from __future__ import annotations

import pytest

import tunelab
from serve_helpers import make_run
from tunelab.decoding import Sampling
from tunelab.inference import encode_messages
from tunelab.serving.engine import load_engine
from tunelab.serving.jobs import Delta, Finish, Job
from tunelab.serving.worker import QueueFull, Worker

TEXTS = ["hello", "good morning team"]
METHODS = [
    ("llama", {"name": "lora", "lora": {"use_dora": True}}),
    ("llama", {"name": "prompt_tuning"}),
    ("llama", {"name": "prefix_tuning"}),
    ("gpt2", {"name": "adapter", "adapter": {"kind": "houlsby"}}),
    ("gpt2", {"name": "bitfit"}),
    ("qwen2", {"name": "full"}),
]


def decode(engine, name, texts, max_tokens=16, sampling=None, stop=()):
    """Every text as one job, run as one batch: (texts, finish reasons)."""
    slot = engine.slot(name)
    events: list[list] = [[] for _ in texts]
    jobs = [
        Job(
            slot,
            "generate",
            events[i].append,
            [encode_messages(slot.loaded, [{"role": "user", "content": text}])],
            max_tokens=max_tokens,
            sampling=sampling or Sampling(),
            stop=list(stop),
        )
        for i, text in enumerate(texts)
    ]
    engine.run(jobs)
    texts_out = ["".join(e.text for e in ev if isinstance(e, Delta)) for ev in events]
    reasons = [next(e.reason for e in ev if isinstance(e, Finish)) for ev in events]
    return texts_out, reasons


@pytest.mark.parametrize(
    ("kind", "method"), METHODS, ids=[m["name"] + str(i) for i, (_, m) in enumerate(METHODS)]
)
def test_every_method_decodes_as_predict(request, tmp_path, kind, method):
    model_dir = request.getfixturevalue(f"tiny_{kind}_dir")
    run = make_run(model_dir, tmp_path / "run", "causal_lm", method, 3)
    engine = load_engine(run)
    texts, _ = decode(engine, "run", TEXTS)
    expected = tunelab.predict(tunelab.load(run), TEXTS, max_new_tokens=16)
    assert [t.strip() for t in texts] == [row["generated"] for row in expected]


def test_mixed_adapter_batch_equals_one_adapter_at_a_time(tmp_path, tiny_llama_dir):
    lora = {"name": "lora", "lora": {"r": 4}}
    runs = [
        make_run(tiny_llama_dir, tmp_path / f"r{i}", "causal_lm", lora, 10 + i) for i in range(3)
    ]
    engine = load_engine(runs[0], {"r1": runs[1], "r2": runs[2]})
    names = ["r0", "r1", "r2", str(tiny_llama_dir)]
    alone = {name: decode(engine, name, ["hello"])[0][0] for name in names}
    slots = [engine.slot(name) for name in names]
    events: list[list] = [[] for _ in names]
    prompt = encode_messages(slots[0].loaded, [{"role": "user", "content": "hello"}])
    jobs = [
        Job(s, "generate", events[i].append, [prompt], max_tokens=16) for i, s in enumerate(slots)
    ]
    engine.run(jobs)  # one batch: adapter_names=[default, r1, r2, __base__]
    mixed = ["".join(e.text for e in ev if isinstance(e, Delta)) for ev in events]
    assert mixed == [alone[name] for name in names]
    assert len(set(mixed)) == 4


def test_seeded_sampling_does_not_depend_on_the_batch(tmp_path, tiny_llama_dir):
    run = make_run(tiny_llama_dir, tmp_path / "run", "causal_lm", {"name": "lora"}, 1)
    engine = load_engine(run)
    rule = Sampling(temperature=1.0, top_p=0.9, seed=42)
    alone, _ = decode(engine, "run", ["hello"], sampling=rule)
    batched, _ = decode(engine, "run", ["hello", "good morning team", "hello"], sampling=rule)
    assert batched[0] == batched[2] == alone[0]
    other, _ = decode(engine, "run", ["hello"], sampling=Sampling(1.0, 0.9, 43))
    assert other != alone


def test_stop_strings_cut_the_text_and_stream_nothing_past_them(tmp_path, tiny_llama_dir):
    run = make_run(tiny_llama_dir, tmp_path / "run", "causal_lm", {"name": "lora"}, 9)
    engine = load_engine(run)
    [full], _ = decode(engine, "run", ["hello"], max_tokens=40)
    stop = full[6:9]
    [cut], [reason] = decode(engine, "run", ["hello"], max_tokens=40, stop=[stop])
    assert cut == full[: full.find(stop)] and reason == "stop"


def _job(slot, text, sink, max_tokens):
    prompt = encode_messages(slot.loaded, [{"role": "user", "content": text}])
    return Job(slot, "generate", sink, [prompt], max_tokens=max_tokens)


def test_worker_refuses_past_its_queue_and_batches_what_waits(tmp_path, tiny_llama_dir):
    run_dir = make_run(tiny_llama_dir, tmp_path / "run", "causal_lm", {"name": "lora"}, 1)
    engine = load_engine(run_dir)
    slot = engine.slot("run")
    rows: list[int] = []
    # room for 2 decoding rows + 1 waiting job: the idle batch's free rows count as room
    worker = Worker(engine, max_queue=1, max_rows=2, window_s=0.2, on_batch=rows.append)
    events: list[list] = [[], [], [], []]
    jobs = [_job(slot, "hello", events[i].append, 4) for i in range(4)]
    for job in jobs[:3]:
        worker.submit(job)
    with pytest.raises(QueueFull):
        worker.submit(jobs[3])
    worker.start()
    worker.stop(60)
    assert rows[0] == 2  # two of the queued jobs decode together from the first step
    assert max(rows) == 2  # never more than max_rows
    assert all(any(isinstance(e, Finish) for e in ev) for ev in events[:3])
    assert events[3] == []


def test_a_request_arriving_mid_generation_joins_and_leaves_first(tmp_path, tiny_llama_dir):
    """Continuous batching: a request submitted while another decodes joins the running batch
    at the next step, finishes first, and both texts equal greedy ``predict``."""
    run_dir = make_run(tiny_llama_dir, tmp_path / "run", "causal_lm", {"name": "lora"}, 9)
    engine = load_engine(run_dir)
    slot = engine.slot("run")
    rows: list[int] = []
    worker = Worker(engine, max_rows=8, on_batch=rows.append)
    order: list[str] = []
    texts = {"long": "", "short": ""}

    def sink(name):
        def take(event):
            if isinstance(event, Delta):
                texts[name] += event.text
                if name == "long" and not order:  # the long row decodes: send the short one
                    order.append("short submitted")
                    worker.submit(_job(slot, "good morning team", sink("short"), 3))
            elif isinstance(event, Finish):
                order.append(f"{name} finished ({event.reason})")

        return take

    worker.start()
    worker.submit(_job(slot, "hello", sink("long"), 40))
    worker.stop(120)
    assert order == ["short submitted", "short finished (length)", "long finished (length)"]
    assert rows[0] == 1 and 2 in rows and rows[-1] == 1  # joined, then left
    loaded = tunelab.load(run_dir)
    [long] = tunelab.predict(loaded, ["hello"], max_new_tokens=40)
    [short] = tunelab.predict(loaded, ["good morning team"], max_new_tokens=3)
    assert texts["long"].strip() == long["generated"]
    assert texts["short"].strip() == short["generated"]
