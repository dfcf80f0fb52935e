"""A run trained by an earlier tunelab, whose config lacked fields added since: it is still
recognised as finished, and its checkpoints resume, while those fields hold their default;
a real change to one of them is still refused."""

from __future__ import annotations

import hashlib
import io
import json
import shutil

import pytest
import yaml
from rich.console import Console

from train_helpers import lm_config, write_text_data
from tunelab.errors import TunelabError
from tunelab.train import train
from tunelab.train.checkpoint import UNHASHED_TRAIN_KEYS, flatten_settings, list_checkpoints

SHORT = {"max_steps": 4, "save_every": 2, "keep_last": 10, "eval_every": 2}
ADDED = (("data", "augment"), ("data", "columns", "image"))  # fields the earlier version lacked


def _without_added(values: dict) -> dict:
    for *parents, name in ADDED:
        node = values
        for part in parents:
            node = node[part]
        del node[name]
    return values


def _earlier_hash(config: dict) -> str:
    """The hash as the earlier tunelab computed it: over every field it knew."""
    relevant = {k: config[k] for k in ("model", "data", "method", "train")}
    relevant["train"] = {k: v for k, v in relevant["train"].items() if k not in UNHASHED_TRAIN_KEYS}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def earlier_run(tiny_llama_dir, tmp_path_factory):
    """A finished 4-step run rewritten as the earlier version left it: its config.yaml,
    summary and checkpoints know nothing of the added fields."""
    root = tmp_path_factory.mktemp("upgrade")
    data = write_text_data(root / "text.jsonl", n=40)
    run = root / "earlier"
    train(lm_config(tiny_llama_dir, data, run, SHORT), resume=False)
    config = _without_added(yaml.safe_load((run / "config.yaml").read_text()))
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    old_hash = _earlier_hash(config)
    summary = json.loads((run / "train_summary.json").read_text())
    (run / "train_summary.json").write_text(json.dumps({**summary, "config_hash": old_hash}))
    sections = {k: config[k] for k in ("model", "data", "method", "train", "eval")}
    for _, path in list_checkpoints(run):
        state = json.loads((path / "state.json").read_text())
        assert "data.augment.flip" in state["settings"]  # what the rewrite removes
        state.update(config_hash=old_hash, settings=flatten_settings(sections))
        (path / "state.json").write_text(json.dumps(state))
    return root, data


def _copy(earlier_run, name: str, unfinished: bool = False):
    root, data = earlier_run
    shutil.copytree(root / "earlier", root / name)
    if unfinished:  # killed after its last checkpoint
        (root / name / "train_summary.json").unlink()
        shutil.rmtree(root / name / "model")
    return root / name, data


def test_a_finished_run_of_the_earlier_version_is_not_trained_again(earlier_run, tiny_llama_dir):
    run, data = _copy(earlier_run, "finished")
    result = train(lm_config(tiny_llama_dir, data, run, SHORT), resume=None)
    assert result.stop_reason == "already_finished" and result.steps == 4


def test_a_checkpoint_of_the_earlier_version_resumes(earlier_run, tiny_llama_dir):
    run, data = _copy(earlier_run, "unfinished", unfinished=True)
    out = io.StringIO()
    cfg = lm_config(tiny_llama_dir, data, run, SHORT)
    result = train(cfg, resume=True, console=Console(file=out, width=300))
    assert result.stop_reason == "completed" and result.steps == 4
    printed = out.getvalue()
    assert f"resuming from {run / 'checkpoints' / 'step-4'}" in printed
    assert "changed since the checkpoint" not in printed  # an added field is no change


def test_a_checkpoint_without_settings_of_the_earlier_version_resumes(earlier_run, tiny_llama_dir):
    """Older still: checkpoints recorded only the config hash."""
    run, data = _copy(earlier_run, "hash_only", unfinished=True)
    for _, path in list_checkpoints(run):
        state = json.loads((path / "state.json").read_text())
        del state["settings"]
        (path / "state.json").write_text(json.dumps(state))
    result = train(lm_config(tiny_llama_dir, data, run, SHORT), resume=True)
    assert result.stop_reason == "completed" and result.steps == 4


def test_an_added_field_set_away_from_its_default_is_still_refused(earlier_run, tiny_llama_dir):
    run, data = _copy(earlier_run, "flipped")
    cfg = lm_config(tiny_llama_dir, data, run, SHORT)
    cfg.data.augment.flip = True  # a real change: not what the earlier run trained with
    with pytest.raises(TunelabError, match=r"different training config \(data\.augment\.flip"):
        train(cfg, resume=None)
    hash_only, _ = _copy(earlier_run, "flipped_hash_only", unfinished=True)
    for _, path in list_checkpoints(hash_only):
        state = json.loads((path / "state.json").read_text())
        del state["settings"]
        (path / "state.json").write_text(json.dumps(state))
    cfg = lm_config(tiny_llama_dir, data, hash_only, SHORT)
    cfg.data.augment.flip = True
    with pytest.raises(TunelabError, match="different training config"):
        train(cfg, resume=True)
