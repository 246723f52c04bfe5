"""The burst predictor: the windowed EMA, the classes, the accuracy it keeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exo.sched.predict import COLD, HOT, NORMAL, Config, Predictor, replay_accuracy

MS = 1_000_000


def windowed_ema(bursts: list[int], alpha: float, history: int) -> float:
    """The definition: weights α(1−α)^k over the last ``history`` bursts, normalised."""
    window = bursts[-history:]
    weights = [alpha * (1 - alpha) ** k for k in range(len(window))]
    return sum(w * b for w, b in zip(weights, reversed(window), strict=True)) / sum(weights)


@given(st.lists(st.integers(0, 50 * MS), min_size=1, max_size=80),
       st.sampled_from([0.1, 0.3, 0.5, 1.0]), st.integers(1, 20))
def test_the_prediction_is_the_ema_over_the_window(bursts: list[int], alpha: float,
                                                   history: int) -> None:
    p = Predictor(Config(alpha=alpha, history=history))
    for b in bursts:
        p.observe(b)
    expected = windowed_ema(bursts, alpha, history)
    assert p.prediction_ns == pytest.approx(expected, rel=1e-6, abs=1e-3)
    assert list(p.history) == bursts[-history:]


def test_classes_follow_the_thresholds() -> None:
    c = Config()
    assert [c.classify(x) for x in (0, MS - 1, MS, 10 * MS - 1, 10 * MS)] == \
        [HOT, HOT, NORMAL, NORMAL, COLD]


def test_a_burst_older_than_the_window_no_longer_counts() -> None:
    p = Predictor(Config(history=4))
    p.observe(100 * MS)  # one huge burst...
    for _ in range(4):
        p.observe(10_000)  # ...then four short ones push it out
    assert p.prediction_ns == pytest.approx(10_000)
    assert p.klass == HOT


def test_accuracy_compares_the_prediction_with_the_burst_that_followed() -> None:
    p = Predictor()
    p.observe(100_000)          # first burst: nothing was predicted for it
    assert p.accuracy.total == 0
    p.observe(200_000)          # predicted Hot, was Hot
    p.observe(50 * MS)          # predicted Hot, was Cold: a miss
    assert (p.accuracy.hits, p.accuracy.total) == (1, 2)


def test_a_hint_sets_the_first_class_only() -> None:
    p = Predictor(klass=COLD)
    assert p.klass == COLD
    p.observe(10_000)
    assert p.klass == HOT


def test_replaying_a_steady_trace_is_accurate() -> None:
    trace = {"a": [100_000] * 50, "b": [20 * MS] * 50}
    assert replay_accuracy(trace) == 1.0


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": 1.5}, {"history": 0},
                                    {"hot_ns": 5, "cold_ns": 5}])
def test_bad_configurations_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Config(**kwargs)  # type: ignore[arg-type]
