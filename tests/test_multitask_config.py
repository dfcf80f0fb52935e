"""Multi-task config (data.tasks), its refusals from validate and train, the mixing rules and
the task-homogeneous sampler."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from multitask_helpers import two_task_raw
from test_preflight import run_cli, validate
from tunelab.config import load_config
from tunelab.errors import ConfigError, TunelabError
from tunelab.task_runs import TASKS_FILE, task_dir
from tunelab.train import train
from tunelab.train.checkpoint import config_hash
from tunelab.train.sampler import LengthGroupedBatchSampler
from tunelab.train.task_sampler import TaskBatchSampler, mixing_probabilities

# ----------------------------------------------------------------------------- refusals


def _moods_as_chat(raw):
    raw["data"]["tasks"][1]["format"] = "chat"


def _chat_tasks_on_a_classifier(raw):
    for task in raw["data"]["tasks"]:
        task["format"] = "chat"
    raw["model"]["task"] = "classification"


CASES = {
    "duplicate_names": (
        lambda raw: raw["data"]["tasks"][1].update(name="topics"),
        "data: tasks.1.name: duplicate task name 'topics' (also tasks.0); give every task a "
        "unique name",
    ),
    "weight_zero": (
        lambda raw: (
            raw["data"].update(mixing="weights"),
            raw["data"]["tasks"][0].update(weight=0),
        ),
        "data.tasks.0.weight: got 0; must be > 0",
    ),
    "negative_loss_weight": (
        lambda raw: raw["data"]["tasks"][1].update(loss_weight=-1),
        "data.tasks.1.loss_weight: got -1; must be > 0",
    ),
    "weight_without_weights_mixing": (
        lambda raw: raw["data"]["tasks"][0].update(weight=2),
        "data: task 'topics' sets weight but mixing is 'proportional', which ignores it; set "
        "data.mixing: weights",
    ),
    "classification_and_chat_mixed": (
        _moods_as_chat,
        "data: tasks mix classification and text-generation formats (topics (classification), "
        "moods (chat))",
    ),
    "chat_tasks_on_a_classifier": (
        _chat_tasks_on_a_classifier,
        "data.tasks.0 (topics): format 'chat' does not fit model.task classification; use a "
        "classification format for every task or change model.task",
    ),
    "prompting_baseline_with_tasks": (
        lambda raw: raw["eval"].update(prompting_baseline=True),
        "eval.prompting_baseline takes one dataset, not data.tasks; set it to false",
    ),
    "misspelt_task_key": (
        lambda raw: raw["data"]["tasks"][0].update(pth="x"),
        "data.tasks.0.pth: unknown key; did you mean 'data.tasks.0.path'?",
    ),
    "missing_task_file": (
        lambda raw: raw["data"]["tasks"][1].update(path="nowhere.jsonl"),
        "data.tasks.1.path: data file not found: nowhere.jsonl",
    ),
    "per_task_stopping_metric_of_no_task": (
        lambda raw: raw["train"].update(early_stopping={"metric": "eval_news_accuracy"}),
        "train.early_stopping.metric: 'eval_news_accuracy' is not computed during validation of "
        "these tasks; choose one of eval_loss, eval_accuracy, eval_f1_macro, eval_topics_loss",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_validate_and_train_refuse_in_one_line(case, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    change, message = CASES[case]
    raw = two_task_raw(tiny_bert_dir, tmp_path, {"max_steps": 1})
    monkeypatch.chdir(tmp_path)
    assert validate(raw, tmp_path, monkeypatch, capsys)[:2] == (0, "OK\n")
    change(raw)
    for command in ("validate", "train"):
        (tmp_path / "run.yaml").write_text(json.dumps(raw))
        code, out, err = run_cli([command, str(tmp_path / "run.yaml")], monkeypatch, capsys)
        assert code == 2, out + err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_one_task_list_is_the_plain_data_block(tiny_bert_dir, tmp_path):
    raw = two_task_raw(tiny_bert_dir, tmp_path, {"max_steps": 1})
    task = raw["data"]["tasks"][0]
    one = {**raw, "data": {"tasks": [task], "cache_dir": raw["data"]["cache_dir"]}}
    fields = {k: v for k, v in task.items() if k != "name"}
    plain = {**raw, "data": {**fields, "cache_dir": raw["data"]["cache_dir"]}}
    a, b = load_config(one), load_config(plain)
    assert a.model_dump() == b.model_dump() and config_hash(a) == config_hash(b)
    assert a.task_names == [] and a.data.path == task["path"]


# ----------------------------------------------------------------------------- --task


def test_task_option_refusals(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    multi, single = tmp_path / "multi", tmp_path / "single"
    (multi / "model").mkdir(parents=True)
    (single / "model").mkdir(parents=True)
    tasks = {"task": "classification", "tasks": [{"name": "topics"}, {"name": "moods"}]}
    (multi / "model" / TASKS_FILE).write_text(json.dumps(tasks))
    assert task_dir(multi, "moods") == multi / "tasks" / "moods"
    assert task_dir(single, None) == single
    with pytest.raises(TunelabError, match="is a multi-task run \\(tasks topics, moods\\); pass"):
        task_dir(multi, None)
    for command in (
        ["predict", str(multi), "--input", "x"],
        ["eval", str(multi)],
        ["export", str(multi), str(tmp_path / "o")],
    ):
        code, _, err = run_cli([*command, "--task", "news"], monkeypatch, capsys)
        assert code == 2
        assert err.strip() == (
            f"error: --task 'news': no such task in {multi}; its tasks are topics, moods"
        ), err
    code, _, err = run_cli(
        ["predict", str(single), "--input", "x", "--task", "a"], monkeypatch, capsys
    )
    assert code == 2 and "is not a multi-task run (no model/tunelab_tasks.json); drop --task" in err
    raw = two_task_raw(tiny_bert_dir, tmp_path, {"max_steps": 1})
    (tmp_path / "run.yaml").write_text(json.dumps(raw))
    code, _, err = run_cli(
        ["eval", str(tmp_path / "run.yaml"), "--task", "news"], monkeypatch, capsys
    )
    assert code == 2
    assert err.strip().endswith("--task 'news': no such task; the run's tasks are topics, moods")


def test_train_api_refuses_a_bad_config_before_writing(tiny_bert_dir, tmp_path):
    raw = two_task_raw(tiny_bert_dir, tmp_path, {"max_steps": 1})
    raw["data"]["tasks"][1]["path"] = str(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match=r"data\.tasks\.1\.path: "):
        train(load_config(raw), resume=False)


# ----------------------------------------------------------------------------- mixing


def test_mixing_formulas():
    sizes = [100, 400]
    assert mixing_probabilities(sizes, "proportional", [1, 1], 2.0) == pytest.approx([0.2, 0.8])
    assert mixing_probabilities(sizes, "weights", [3, 1], 2.0) == pytest.approx([0.75, 0.25])
    # T = 2: sqrt(100) = 10, sqrt(400) = 20
    assert mixing_probabilities(sizes, "temperature", [1, 1], 2.0) == pytest.approx([1 / 3, 2 / 3])
    assert mixing_probabilities(sizes, "temperature", [1, 1], 1.0) == pytest.approx([0.2, 0.8])
    assert mixing_probabilities(sizes, "temperature", [1, 1], 1e6) == pytest.approx(
        [0.5, 0.5], abs=1e-5
    )


def _sampler(probs, sizes=(30, 12), batch_size=4):
    samplers = [
        LengthGroupedBatchSampler([5 + i % 7 for i in range(n)], batch_size, seed=3 + k)
        for k, n in enumerate(sizes)
    ]
    return TaskBatchSampler(samplers, probs, seed=11)


def test_batches_hold_one_task_follow_the_mix_and_walk_each_task_in_order():
    sampler = _sampler([0.25, 0.75])
    assert len(sampler) == 8 + 3  # ceil(30/4) + ceil(12/4) batches per epoch
    seen = Counter()
    per_task = {0: [], 1: []}
    for epoch in range(300):
        sampler.set_epoch(epoch)
        for batch in sampler:
            task = 0 if max(batch) < 30 else 1
            assert all((i < 30) == (task == 0) for i in batch)  # one task per batch
            seen[task] += 1
            per_task[task].append([i - 30 * task for i in batch])
    total = seen[0] + seen[1]
    assert total == 300 * 11
    sd = math.sqrt(0.25 * 0.75 / total)
    assert abs(seen[0] / total - 0.25) < 4 * sd
    # each task goes through its own epochs: every run of len(epoch) batches covers its rows
    for task, n, size in ((0, 30, 8), (1, 12, 3)):
        batches = per_task[task]
        for start in range(0, len(batches) - size + 1, size):
            rows = sorted(i for b in batches[start : start + size] for i in b)
            assert rows == list(range(n))


def test_resume_mid_epoch_gives_the_remaining_batches_and_positions():
    sampler = _sampler([0.5, 0.5])
    sampler.set_epoch(2)
    whole = list(sampler)
    counts = [0, 0]
    for epoch in range(2):
        for task in sampler.epoch_tasks(epoch):
            counts[task] += 1
    for task in sampler.epoch_tasks(2)[:5]:
        counts[task] += 1
    again = _sampler([0.5, 0.5])
    again.set_epoch(2, 5)
    assert list(again) == whole[5:] and len(again) == len(whole) - 5
    assert again.state_dict(2, 5) == {"task_batches": counts}
    again.check_state({"task_batches": counts}, 2, 5)
    with pytest.raises(TunelabError, match="task positions"):
        _sampler([0.9, 0.1]).check_state({"task_batches": counts}, 2, 5)


def test_dumped_config_reloads_to_the_same(tiny_bert_dir, tmp_path):
    from tunelab.config import dump_config

    raw = two_task_raw(tiny_bert_dir, tmp_path, {"max_steps": 1}, mixing="weights")
    raw["data"]["tasks"][0]["weight"] = 3.0
    cfg = load_config(raw)
    dump_config(cfg, tmp_path / "dumped.yaml")
    again = load_config(tmp_path / "dumped.yaml")
    assert again.model_dump() == cfg.model_dump() and config_hash(again) == config_hash(cfg)
    proportional = load_config(two_task_raw(tiny_bert_dir, tmp_path, {"max_steps": 1}))
    dump_config(proportional, tmp_path / "p.yaml")
    assert load_config(tmp_path / "p.yaml").model_dump() == proportional.model_dump()
