"""Aggregates over seeds with intervals, through rliable (Agarwal et al. 2021).

Scores are arrays of shape ``(runs, tasks)``: one row per seed, one column per env (already
normalized when tasks are mixed). Intervals are 95% stratified bootstrap CIs (runs are
resampled within each task). :func:`t_interval` is the small-sample interval of one mean
(episodes of one policy), from scipy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
REPS = 5_000  # bootstrap replications: enough for a stable 95% interval at 3-10 seeds
SEED = 0  # the bootstrap's random state: the same scores give the same interval


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its interval (``low <= point <= high`` up to bootstrap noise)."""

    point: float
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        """The three figures as plain floats."""
        return asdict(self)


def as_runs(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """`scores` as a float ``(runs, tasks)`` array: a flat list is one task's runs."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"scores need shape (runs, tasks) with a run at least, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("scores must be finite")
    return array


def aggregates(scores: Sequence[float] | np.ndarray, reps: int = REPS) -> dict[str, Estimate]:
    """IQM and mean over runs and tasks, each with its stratified bootstrap CI."""
    from rliable import metrics

    funcs = {"iqm": metrics.aggregate_iqm, "mean": metrics.aggregate_mean}
    array = as_runs(scores)
    points, intervals = _interval_estimates(
        {"x": array},
        lambda x: np.array([f(x) for f in funcs.values()]),
        reps=reps,
        confidence_interval_size=CONFIDENCE,
    )
    return {
        name: Estimate(float(points["x"][i]), *_bounds(intervals["x"][:, i], points["x"][i]))
        for i, name in enumerate(funcs)
    }


def probability_of_improvement(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, reps: int = REPS
) -> Estimate:
    """P(a run of X scores above a run of Y), ties counting half, averaged over tasks."""
    from rliable import metrics

    pair = (as_runs(x), as_runs(y))
    if pair[0].shape[1] != pair[1].shape[1]:
        raise ValueError("X and Y need the same tasks")
    points, intervals = _interval_estimates(
        {"xy": pair},
        metrics.probability_of_improvement,
        reps=reps,
        confidence_interval_size=CONFIDENCE,
    )
    return Estimate(float(points["xy"]), *_bounds(intervals["xy"], points["xy"]))


def performance_profile(
    scores: Mapping[str, Sequence[float] | np.ndarray], taus: Sequence[float], reps: int = REPS
) -> dict[str, dict[str, list[float]]]:
    """Per name, the fraction of runs scoring above each tau, with its 95% band."""
    from rliable import library

    with _seeded():
        profiles, bands = library.create_performance_profile(
            {name: as_runs(s) for name, s in scores.items()},
            np.asarray(taus, dtype=np.float64),
            reps=reps,
            confidence_interval_size=CONFIDENCE,
        )
    return {
        name: {
            "tau": [float(t) for t in taus],
            "fraction": [float(v) for v in profiles[name]],
            "low": [float(v) for v in np.minimum(bands[name][0], profiles[name])],
            "high": [float(v) for v in np.maximum(bands[name][1], profiles[name])],
        }
        for name in scores
    }


def curve_band(curves: Sequence[Sequence[float]] | np.ndarray, reps: int = 1_000) -> dict[str, Any]:
    """IQM over runs at each point of equal-length curves ``(runs, points)``, with its band."""
    from rliable import metrics

    array = np.asarray(curves, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"curves need shape (runs, points), got {array.shape}")
    points, intervals = _interval_estimates(
        {"c": array[:, None, :]},  # (runs, one task, points)
        lambda x: np.array([metrics.aggregate_iqm(x[:, :, j]) for j in range(x.shape[-1])]),
        reps=reps,
        confidence_interval_size=CONFIDENCE,
    )
    iqm = points["c"]
    return {
        "iqm": [float(v) for v in iqm],
        "low": [float(v) for v in np.minimum(intervals["c"][0], iqm)],
        "high": [float(v) for v in np.maximum(intervals["c"][1], iqm)],
    }


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """The mean of `values` with its Student-t interval (one value: the mean, no width)."""
    from scipy import stats

    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("t_interval needs a value at least")
    mean = float(array.mean())
    if array.size == 1:
        return Estimate(mean, mean, mean)
    sem = float(array.std(ddof=1)) / math.sqrt(array.size)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=array.size - 1)) * sem
    return Estimate(mean, mean - half, mean + half)


def _interval_estimates(*args: Any, **kwargs: Any) -> tuple[dict, dict]:
    """The ``get_interval_estimates`` of rliable, seeded."""
    from rliable import library

    with _seeded():
        return library.get_interval_estimates(*args, **kwargs)


@contextmanager
def _seeded() -> Iterator[None]:
    """Seed numpy's global generator for a block, then put its state back.

    rliable's stratified bootstrap draws from ``np.random`` whatever random state it is
    given, so the seed goes there, and the caller's random stream is left as it was.
    """
    state = np.random.get_state()
    np.random.seed(SEED)
    try:
        yield
    finally:
        np.random.set_state(state)


def _bounds(interval: np.ndarray, point: Any) -> tuple[float, float]:
    """(low, high), widened to hold the point (a degenerate bootstrap can miss it by a ulp)."""
    low, high = (float(v) for v in np.ravel(interval)[:2])
    return min(low, float(point)), max(high, float(point))
