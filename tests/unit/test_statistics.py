"""rl_platform.evaluation.statistics: rliable's aggregates and scipy's t interval."""

import numpy as np
import pytest

from rl_platform.evaluation import statistics as st


def test_identical_scores_have_no_width():
    agg = st.aggregates([8.0] * 10, reps=200)
    assert agg["iqm"] == st.Estimate(8.0, 8.0, 8.0)
    assert agg["mean"].point == 8.0


def test_iqm_drops_the_outer_quarters():
    scores = [0.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 100.0]
    agg = st.aggregates(scores, reps=200)
    assert agg["iqm"].point == pytest.approx(7.0)
    assert agg["mean"].point == pytest.approx(np.mean(scores))
    assert agg["mean"].low <= agg["mean"].point <= agg["mean"].high


def test_intervals_are_reproducible_and_shrink_with_runs():
    rng = np.random.default_rng(1)
    few, many = rng.normal(size=5), rng.normal(size=200)
    assert st.aggregates(few, reps=300) == st.aggregates(few, reps=300)
    width = {
        n: (e := st.aggregates(s, reps=300)["mean"]).high - e.low
        for n, s in (("few", few), ("many", many))
    }
    assert width["many"] < width["few"]


def test_probability_of_improvement():
    assert st.probability_of_improvement([8.0] * 5, [7.0] * 5, reps=200).point == 1.0
    assert st.probability_of_improvement([7.0] * 5, [7.0] * 5, reps=200).point == 0.5
    with pytest.raises(ValueError, match="same tasks"):
        st.probability_of_improvement(np.ones((3, 2)), np.ones((3, 1)))


def test_performance_profile_and_curve_band():
    profile = st.performance_profile(
        {"a": [8.0] * 4, "b": [6.0, 7.0, 7.0, 8.0]}, [6.5, 7.5], reps=200
    )
    assert profile["a"]["fraction"] == [1.0, 1.0]
    assert profile["b"]["fraction"] == [0.75, 0.25]
    band = st.curve_band(np.tile(np.arange(4.0), (5, 1)), reps=100)
    assert band["iqm"] == [0.0, 1.0, 2.0, 3.0] == band["low"] == band["high"]


def test_t_interval_uses_student_t():
    values = np.arange(10.0)
    est = st.t_interval(values)
    sem = values.std(ddof=1) / np.sqrt(10)
    assert (est.high - est.point) / sem == pytest.approx(2.262, abs=1e-3)  # not 1.96
    assert st.t_interval([3.0]) == st.Estimate(3.0, 3.0, 3.0)


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="finite"):
        st.aggregates([1.0, float("nan")])
    with pytest.raises(ValueError, match="shape"):
        st.aggregates([])
