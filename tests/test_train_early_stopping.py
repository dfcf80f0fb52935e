"""Early stopping decisions and best tracking."""

from __future__ import annotations

from tunelab.config import EarlyStoppingConfig
from tunelab.train.early_stopping import EarlyStopping


def test_min_mode_with_patience_and_delta():
    stop = EarlyStopping(EarlyStoppingConfig(mode="min", patience=2, min_delta=0.1))
    assert stop.update(1.0, step=10)
    assert not stop.update(0.95, step=20)  # better, but by less than min_delta
    assert not stop.should_stop
    assert stop.update(0.85, step=30)
    assert (stop.best, stop.best_step, stop.bad_evals) == (0.85, 30, 0)
    assert not stop.update(0.9, step=40)
    assert not stop.update(0.86, step=50)
    assert stop.should_stop
    assert stop.best_step == 30


def test_max_mode_without_patience_never_stops():
    stop = EarlyStopping(EarlyStoppingConfig(metric="eval_f1", mode="max"))
    assert stop.update(0.5, 1)
    assert stop.update(0.6, 2)
    for step in range(3, 20):
        assert not stop.update(0.1, step)
    assert not stop.should_stop
    assert stop.best == 0.6


def test_nan_is_never_best_and_state_roundtrips():
    stop = EarlyStopping(EarlyStoppingConfig(patience=1))
    assert not stop.update(float("nan"), 1)
    assert stop.best is None
    stop.update(2.0, 2)
    other = EarlyStopping(EarlyStoppingConfig(patience=1))
    other.load_state_dict(stop.state_dict())
    assert (other.best, other.best_step, other.bad_evals) == (2.0, 2, 0)
