"""The report as a person sees it: real tiny runs (classification and QA generation) opened
in headless Chromium, one session for every check. Each check reads the run's own files
(not the report code) for the numbers it expects on the page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tunelab.report.live as live_module
from browser import chart_stats, find_browser, load, open_chromium, screenshot
from train_helpers import cls_config, write_classification_data
from tunelab.cli import app
from tunelab.config import load_config
from tunelab.train import train

CITIES = ("Paris", "Rome", "Lima", "Oslo", "Cairo", "Quito")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert_dir, tiny_llama_dir):
    """A classification run (tiny BERT, validation every 3 steps) and a QA generation run
    (tiny Llama, with the prompting baseline); every report write during training recorded."""
    tmp = tmp_path_factory.mktemp("report_runs")
    data = write_classification_data(tmp / "cls.jsonl", n=120)
    cls = cls_config(tiny_bert_dir, data, tmp / "cls", {"max_steps": 6, "eval_every": 3})
    cls = load_config({**cls.model_dump(mode="json"), "eval": {"at_end": True}})
    rows = [
        {"context": f"Match {i} was played in {CITIES[i % 6]}.",
         "question": f"Where was match {i} played?", "answer": CITIES[i % 6]}
        for i in range(30)
    ]  # fmt: skip
    qa_data = tmp / "qa.jsonl"
    qa_data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    gen = load_config({
        "model": {"name_or_path": str(tiny_llama_dir)},
        "data": {"path": str(qa_data), "format": "qa", "max_length": 64,
                 "cache_dir": str(tmp / "cache"),
                 "split": {"train": 0.7, "validation": 0.1, "test": 0.2}},
        "method": {"name": "lora", "lora": {"r": 4}},
        "train": {"max_steps": 2, "batch_size": 4, "report_to": []},
        "eval": {"batch_size": 8, "shots": 1, "generation": {"max_new_tokens": 6},
                 "metrics": ["rouge", "exact_match", "qa_f1", "perplexity", "efficiency"],
                 "prompting_baseline": True},
        "output": {"dir": str(tmp / "gen")},
    })  # fmt: skip
    writes: list[bool] = []
    original = live_module.write_report

    def spy(run_dirs, out_path=None, live=False):
        writes.append(live)
        return original(run_dirs, out_path, live)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(live_module, "write_report", spy)
        train(cls)
        cls_writes = list(writes)
        train(gen)
    return cls.run_dir, gen.run_dir, cls_writes


@pytest.fixture(scope="module")
def driver():
    try:
        find_browser()
    except RuntimeError as exc:
        pytest.fail(str(exc))  # a missing browser is a failure, never a skip
    session = open_chromium()
    yield session
    session.quit()


def table(driver, name: str) -> list[list[str]]:
    """The body cells of the table ``data-table=name`` (first one on the page)."""
    return driver.execute_script(
        "var t=document.querySelector('table[data-table=\"'+arguments[0]+'\"]');"
        "return t ? Array.from(t.tBodies[0].rows).map(r=>Array.from(r.cells).map(c=>c.innerText))"
        " : null;",
        name,
    )


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_classification_report_in_the_browser(runs, driver, tmp_path):
    run, _, writes = runs
    evals = [r for r in read_jsonl(run / "metrics.jsonl") if r["type"] == "eval"]
    train_rows = [r for r in read_jsonl(run / "metrics.jsonl") if r["type"] == "train"]
    # live at each validation, then final twice (loop end, after the evaluation)
    assert writes == [True] * len(evals) + [False, False] and len(evals) == 2
    errors = load(driver, run / "report.html")
    assert errors == []
    screenshot(driver, tmp_path / "classification.png")
    assert (tmp_path / "classification.png").stat().st_size > 50_000
    assert not driver.execute_script("return document.body.innerText").count("reloads every")

    charts = {c["title"]: c for c in chart_stats(driver)}
    eval_keys = [k for k in evals[0] if k.startswith("eval_") and k != "eval_loss"]
    expected = {
        "loss",
        "learning rate",
        "gradient norm (before clipping)",
        "throughput",
        "peak memory",
        "confusion matrix",
        "label distribution",
        "token lengths (before truncation)",
        *(f"validation: {k}" for k in eval_keys),
    }
    assert expected <= set(charts) and "fp16 loss scale" not in charts  # fp32 run: no scale
    for title, chart in charts.items():
        assert chart["drawn"] and chart["traces"] >= 1 and min(chart["points"]) >= 1, title
        assert chart["svg"] >= 1, title  # plotly drew it
    assert charts["loss"]["points"] == [len(train_rows), len(evals)]

    results = read_json(run / "eval_results.json")["metrics"]
    predictions = read_jsonl(run / "predictions.jsonl")
    heat = driver.execute_script(
        "return Array.from(document.querySelectorAll('div.chart'))"
        ".find(d=>d.dataset.title==='confusion matrix').data[0].z"
    )
    assert heat == results["confusion_matrix"]
    (reliability,) = [c for t, c in charts.items() if t.startswith("reliability diagram")]
    counts = driver.execute_script(
        "return Array.from(document.querySelectorAll('div.chart'))"
        ".find(d=>d.dataset.title.startsWith('reliability')).data[0].customdata"
    )
    assert sum(counts) == len(predictions) and reliability["traces"] == 3

    per_class = {row[0]: row[1:] for row in table(driver, "per_class")}
    assert set(per_class) == set(results["per_class"])
    for name, values in results["per_class"].items():
        shown = per_class[name]
        for cell, key in zip(shown[:3], ("precision", "recall", "f1"), strict=True):
            assert number(cell) == pytest.approx(values[key], abs=5e-4), (name, key)
        assert int(shown[3]) == values["support"]
    summary = read_json(run / "train_summary.json")
    rows = dict(table(driver, "summary"))
    assert rows["trainable / total parameters"].startswith(
        f"{summary['trainable_params']:,} / {summary['total_params']:,}"
    )
    assert int(rows["steps"]) == summary["steps"] == 6
    data_report = read_json(run / "data_report.json")
    splits = {row[0]: int(row[1].replace(",", "")) for row in table(driver, "splits")}
    assert splits == data_report["rows"]


def test_generation_report_and_mixed_comparison(runs, driver, tmp_path):
    cls_run, gen_run, _ = runs
    assert load(driver, gen_run / "report.html") == []
    predictions = read_jsonl(gen_run / "predictions.jsonl")
    samples = table(driver, "samples")
    assert len(samples) == len(predictions) > 0
    header = driver.execute_script(
        "return Array.from(document.querySelector('table[data-table=samples]').tHead.rows[0]"
        ".cells).map(c=>c.innerText)"
    )
    assert header[:4] == ["#", "prompt", "reference", "prediction"]
    assert {"rougeL", "qa_f1", "exact_match"} <= set(header)
    for row, record in zip(samples, predictions, strict=True):
        assert row[3].strip() == record["prediction"].strip()
        assert number(row[header.index("qa_f1")]) == pytest.approx(record["qa_f1"], abs=5e-4)
    prompting = read_json(gen_run / "prompting_comparison.json")
    shown = table(driver, "prompting")
    assert [r[0] for r in shown] == [r["setting"] for r in prompting["rows"]]
    screenshot(driver, tmp_path / "generation.png")

    out = tmp_path / "compare.html"
    result = CliRunner().invoke(app, ["report", str(cls_run), str(gen_run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load(driver, out) == []
    text = driver.execute_script("return document.body.innerText")
    assert "these runs mix tasks (causal_lm, classification)" in text
    rows = {r[0]: r for r in table(driver, "comparison")}
    for run in (cls_run, gen_run):
        summary = read_json(run / "train_summary.json")
        assert number(rows[run.name][5]) == summary["trainable_params"]
        assert number(rows[run.name][7]) == pytest.approx(summary["wall_time_s"], rel=1e-3)
    assert rows[cls_run.name][3] == "accuracy" and rows[gen_run.name][3] == "qa_f1"
    best = driver.execute_script(
        "return Array.from(document.querySelectorAll('table[data-table=comparison] td.best'))"
        ".map(td=>[td.parentElement.rowIndex, td.cellIndex])"
    )
    fewer = min((cls_run, gen_run), key=lambda r: read_json(r / "train_summary.json")[
        "trainable_params"])  # fmt: skip
    row_of = {cls_run.name: 1, gen_run.name: 2}
    assert [row_of[fewer.name], 5] in best
    assert not [b for b in best if b[1] == 4]  # different metrics: no best value marked
    overlay = {c["title"]: c for c in chart_stats(driver) if c["drawn"]}
    assert overlay["train loss"]["traces"] == 2
    driver.execute_script("document.querySelectorAll('details').forEach(d=>d.open=true)")
    drawn = [c for c in chart_stats(driver) if c["drawn"]]
    assert len(drawn) == len(chart_stats(driver))  # opening a run draws its charts
    screenshot(driver, tmp_path / "comparison.png")
