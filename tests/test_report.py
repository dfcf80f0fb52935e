"""`tunelab report` on run directories written by hand: sections, stage boundaries, bad input.

The browser checks of real runs are in test_report_browser.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import tunelab
from tunelab.cli import app
from tunelab.data.stats import length_histograms
from tunelab.errors import TunelabError
from tunelab.report import SECTIONS, Section, register, write_report
from tunelab.report.classes import reliability
from tunelab.report.rundata import load_run


def figures(html: str) -> list[dict]:
    """Every chart's figure in a report, in page order."""
    found = re.findall(r'<script type="application/json" id="chart-\d+-fig">(.*?)</script>', html)
    return [json.loads(text.replace("<\\/", "</")) for text in found]


def by_title(html: str) -> dict[str, dict]:
    return {f["layout"]["title"]["text"]: f for f in figures(html)}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def staged_run(path: Path) -> Path:
    """A classification run of 8 steps in two stages (sft: steps 1-4, dpo: 5-8)."""
    path.mkdir(parents=True)
    cfg = {"model": {"name_or_path": "tiny-bert"}, "data": {"format": "classification"},
           "method": {"name": "lora", "lora": {"r": 4}}, "output": {"dir": str(path)}}  # fmt: skip
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = []
    for step in range(1, 9):
        stage = "sft" if step <= 4 else "dpo"
        rows.append({"type": "train", "step": step, "loss": 2.0 / step, "lr": 1e-3,
                     "grad_norm": 1.0, "tokens_per_s": 100.0 + step, "memory_mb": 50.0,
                     "stage": stage})  # fmt: skip
        if step % 4 == 0:
            rows.append(
                {
                    "type": "eval",
                    "step": step,
                    "eval_loss": 1.0 / step,
                    "eval_accuracy": step / 10,
                    "is_best": True,
                    "stage": stage,
                }
            )
    write_jsonl(path / "metrics.jsonl", rows)
    return path


def test_stage_boundaries_drawn_where_the_stage_changes(tmp_path):
    run = staged_run(tmp_path / "staged")
    html = Path(write_report([run])).read_text(encoding="utf-8")
    charts = by_title(html)
    for title in ("loss", "validation: eval_accuracy", "learning rate", "peak memory"):
        layout = charts[title]["layout"]
        assert [(s["x0"], s["x1"]) for s in layout["shapes"]] == [(5, 5)], title
        assert [a["text"] for a in layout["annotations"]] == ["stage: sft", "stage: dpo"]
    loss = charts["loss"]["data"]
    assert loss[0]["x"] == list(range(1, 9)) and loss[0]["y"][1] == pytest.approx(1.0)
    assert loss[1]["name"] == "validation loss" and loss[1]["x"] == [4, 8]
    # without a stage field there is no boundary
    lines = (run / "metrics.jsonl").read_text().replace(', "stage": "dpo"', "")
    (run / "metrics.jsonl").write_text(lines.replace(', "stage": "sft"', ""))
    assert "shapes" not in by_title(Path(write_report([run])).read_text())["loss"]["layout"]


def test_half_written_metrics_line_gives_a_partial_report_and_a_note(tmp_path):
    run = staged_run(tmp_path / "killed")
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"type": "train", "step": 9, "loss": 0.2')  # killed mid-write
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "metrics.jsonl:11: incomplete last line" in out
    assert f"report written to {run / 'report.html'}" in out
    html = (run / "report.html").read_text()
    assert by_title(html)["loss"]["data"][0]["x"] == list(range(1, 9))
    assert "incomplete last line" in html


def test_run_without_metrics_yet_gets_a_summary_and_notes(tmp_path):
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name_or_path": "m"}}))
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "no metrics yet" in result.output
    html = (tmp_path / "r.html").read_text()
    assert 'data-section="summary"' in html and "not started (no metrics yet)" in html
    assert "the curves appear after the first logged step" in html
    assert figures(html) == []


@pytest.mark.parametrize("kind", ["missing", "empty", "file"])
def test_not_a_run_directory_is_a_one_line_error(tmp_path, kind):
    target = tmp_path / "x"
    if kind == "empty":
        target.mkdir()
    elif kind == "file":
        target.write_text("hi")
    result = CliRunner().invoke(app, ["report", str(target)])
    assert isinstance(result.exception, TunelabError)  # main() prints it in one line, exit 2
    message = str(result.exception)
    assert "\n" not in message and message.startswith(f"{target}: ")
    assert re.search(r"no such run directory|not a directory|not a run directory", message)


def test_output_that_is_a_directory_is_refused(tmp_path):
    run = staged_run(tmp_path / "run")
    with pytest.raises(TunelabError, match="a directory; give a file name"):
        tunelab.write_report([run], tmp_path)


def test_unreadable_results_leave_the_rest_of_the_report(tmp_path):
    run = staged_run(tmp_path / "run")
    (run / "eval_results.json").write_text("{not json")
    (run / "data_report.json").write_text(json.dumps({"rows": "oops"}))  # wrong shape
    html = Path(write_report([run])).read_text()
    assert "eval_results.json: unreadable JSON" in html
    assert "this section could not be drawn (AttributeError" in html  # data section only
    assert "validation: eval_accuracy" in by_title(html)


def test_reliability_bins_and_calibration_error(tmp_path):
    # 4 rows at confidence 0.95, all right; 4 at 0.65, half right: ECE = .5*.05 + .5*.15 = 0.1
    run = staged_run(tmp_path / "run")
    rows = []
    for i in range(8):
        high = i < 4
        label = "a" if high or i % 2 else "b"
        probs = {"a": 0.95, "b": 0.05} if high else {"a": 0.65, "b": 0.35}
        rows.append({"index": i, "text": "t", "label": label, "prediction": "a",
                     "probabilities": probs})  # fmt: skip
    write_jsonl(run / "predictions.jsonl", rows)
    rel = reliability(load_run(run).predictions)
    assert rel.ece == pytest.approx(0.1)
    assert rel.count[9] == 4 and rel.count[6] == 4 and sum(rel.count) == 8
    assert rel.accuracy[9] == 1.0 and rel.accuracy[6] == 0.5
    (run / "eval_results.json").write_text(json.dumps({"task": "classification", "metrics": {}}))
    chart = by_title(Path(write_report([run])).read_text())["reliability diagram (ECE 0.100)"]
    assert chart["data"][0]["customdata"] == rel.count


def test_token_length_histogram_shares_bins_and_counts_every_row():
    lengths = {"train": [3, 10, 50, 400], "test": [7, 600]}
    hist = length_histograms(lengths, max_length=64, bins=10)
    assert hist["train"]["edges"] == hist["test"]["edges"]
    assert hist["train"]["edges"][0] == 0 and hist["train"]["edges"][-1] >= 64
    assert sum(hist["train"]["counts"]) == 4 and sum(hist["test"]["counts"]) == 2
    assert hist["test"]["counts"][-1] == 1  # 600 is past the 99th percentile: last bin


def test_a_registered_section_appears_in_the_report(tmp_path):
    def render(run, page):
        return f"<p>toy section of {run.name}</p>"

    register(Section("toy", "Toy", "run", render), before="data")
    try:
        with pytest.raises(ValueError, match="already registered"):
            register(Section("toy", "Toy", "run", render))
        html = Path(write_report([staged_run(tmp_path / "run")])).read_text()
        assert html.index('data-section="curves"') < html.index('data-section="toy"')
        assert '<section data-section="toy" data-run="run"><h2>Toy</h2>' in html
    finally:
        SECTIONS.pop("toy")


def test_live_report_reloads_and_a_finished_one_does_not(tmp_path):
    run = staged_run(tmp_path / "run")
    live = Path(write_report([run], tmp_path / "live.html", live=True)).read_text()
    done = Path(write_report([run], tmp_path / "done.html")).read_text()
    assert "location.reload()" in live and "training is running" in live
    assert "location.reload()" not in done and "training is running" not in done
    assert re.search(r"<script[^>]+src=|<link[^>]+href=", done) is None  # all inline
    assert "Plotly.newPlot" in done and len(done) > 3_000_000  # plotly.js itself is in the file


def test_cli_error_is_one_line_without_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"error: {tmp_path}: not a run directory")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 2


def test_output_report_false_turns_the_training_report_off(tmp_path):
    from rich.console import Console

    from tunelab.config import load_config
    from tunelab.train.run import run_report

    raw = {"model": {"name_or_path": "m"}, "data": {"path": "d.jsonl", "format": "text"},
           "output": {"dir": str(tmp_path / "run")}}  # fmt: skip
    assert run_report(load_config({**raw, "output": {**raw["output"], "report": False}}),
                      Console()) is None  # fmt: skip
    hook = run_report(load_config(raw), Console())
    staged_run(tmp_path / "run")
    assert hook(True) is True and "location.reload()" in (tmp_path / "run/report.html").read_text()


def test_a_long_run_is_thinned_to_keep_the_page_light(tmp_path):
    run = staged_run(tmp_path / "long")
    rows = [{"type": "train", "step": s, "loss": 1.0 + s % 7} for s in range(1, 5002)]
    write_jsonl(run / "metrics.jsonl", rows)
    trace = by_title(Path(write_report([run])).read_text())["loss"]["data"][0]
    assert len(trace["x"]) <= 2000 and trace["x"][0] == 1 and trace["x"][-1] == 5001
    assert all(y == 1.0 + x % 7 for x, y in zip(trace["x"], trace["y"], strict=True))
