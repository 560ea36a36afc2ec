"""Always-valid A/B statistics: the mixture sequential probability ratio test (mSPRT).

Two arms' per-session outcomes (the session is the unit of analysis) are compared by
their difference of means ``b - a``. The normal-mixture mSPRT of Johari, Pekelis and
Walsh ("Always valid inference", 2017; Optimizely's stats engine) gives a p-value and a
confidence sequence that stay valid however often, and whenever, they are read: the
chance that an A/A test ever shows ``p <= alpha`` is at most ``alpha``. The variance is
estimated from the data at every look. Formulas, choices and simulated error rates:
docs/serving.md (A/B tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

# Defaults: alpha; tau, the mixture's scale in standard deviations of a session's outcome;
# sessions per arm before the first look (the plug-in variance needs them; simulated in
# tests/unit/test_sequential.py).
ALPHA = 0.05
TAU = 0.25
MIN_SESSIONS = 30


class SequentialResult(NamedTuple):
    """An mSPRT read at its latest look (difference ``b - a`` of session means).

    ``p_value`` is the always-valid p-value (the smallest over the looks so far);
    ``low``/``high`` the always-valid confidence sequence (the intersection of the looks'
    intervals; None before the first look); ``stopped`` whether ``p_value <= alpha`` at
    some look, and then ``winner`` is ``"a"`` or ``"b"`` and ``stopped_at`` the sessions
    ``(n_a, n_b)`` of that look; ``sessions`` the sessions ``(n_a, n_b)`` seen.
    """

    estimate: float | None
    p_value: float
    low: float | None
    high: float | None
    stopped: bool
    winner: str | None
    stopped_at: tuple[int, int] | None
    sessions: tuple[int, int]


class LookStatistics(NamedTuple):
    """Per look (arrays of one shape): difference, its variance, mixture log LR, interval."""

    diff: np.ndarray
    var: np.ndarray
    log_lr: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _check(alpha: float, tau: float, min_sessions: int) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not (math.isfinite(tau) and tau > 0.0):
        raise ValueError(f"tau must be a positive number, got {tau!r}")
    if min_sessions < 2:
        raise ValueError(f"min_sessions must be >= 2 (a variance needs two), got {min_sessions}")


def look_statistics(
    mean_a: np.ndarray,
    var_a: np.ndarray,
    n_a: np.ndarray,
    mean_b: np.ndarray,
    var_b: np.ndarray,
    n_b: np.ndarray,
    alpha: float = ALPHA,
    tau: float = TAU,
) -> LookStatistics:
    """The normal-mixture mSPRT at looks with these per-arm means, variances and counts.

    Arrays broadcast together; ``var_*`` are sample variances of session outcomes.
    ``V = var_a/n_a + var_b/n_b`` is the difference's variance, ``t2 = tau^2 (var_a +
    var_b) / 2`` the mixture's variance and ``log_lr = log sqrt(V / (V + t2)) + t2 d^2 /
    (2 V (V + t2))``; the interval is every difference whose ratio stays below
    ``1/alpha``. Where both variances are 0, a difference of 0 gives ``log_lr = 0`` and
    any other ``+inf``; the interval is then the point. Overflowing inputs give NaN.
    """
    with np.errstate(all="ignore"):
        diff = np.asarray(mean_b, np.float64) - np.asarray(mean_a, np.float64)
        var = np.asarray(var_a, np.float64) / n_a + np.asarray(var_b, np.float64) / n_b
        t2 = tau**2 * (np.asarray(var_a, np.float64) + np.asarray(var_b, np.float64)) / 2.0
        log_lr = 0.5 * np.log(var / (var + t2)) + t2 * diff**2 / (2.0 * var * (var + t2))
        radius = np.sqrt(
            2.0 * var * (var + t2) / t2 * (math.log(1.0 / alpha) + 0.5 * np.log1p(t2 / var))
        )
        flat = var == 0.0
        log_lr = np.where(flat, np.where(diff == 0.0, 0.0, np.inf), log_lr)
        radius = np.where(flat, 0.0, radius)
        bad = ~np.isfinite(diff) | ~np.isfinite(var)
        log_lr = np.where(bad, np.nan, log_lr)
        radius = np.where(bad, np.nan, radius)
    return LookStatistics(diff, var, log_lr, diff - radius, diff + radius)


def _running_moments(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Count, mean and sample variance of ``x[..., :k+1][mask]`` for every k (last axis).

    Sums are taken around the masked values' overall mean, so that large, nearly equal
    outcomes keep their variance.
    """
    with np.errstate(all="ignore"):
        m = mask.astype(np.float64)
        n = np.cumsum(m, axis=-1)
        total = np.sum(m, axis=-1, keepdims=True)
        shift = np.sum(np.where(mask, x, 0.0), axis=-1, keepdims=True) / np.maximum(total, 1)
        y = np.where(mask, x - shift, 0.0)
        s1 = np.cumsum(y, axis=-1)
        s2 = np.cumsum(y * y, axis=-1)
        mean = s1 / n + shift
        var = np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1)
    return n, mean, var


def msprt(
    a: Sequence[float],
    b: Sequence[float],
    alpha: float = ALPHA,
    tau: float = TAU,
    min_sessions: int = MIN_SESSIONS,
    order: Sequence[int] | None = None,
) -> SequentialResult:
    """The mSPRT of ``b - a`` on per-session outcomes, looked at after every session.

    ``a`` and ``b`` are each arm's session outcomes in arrival order; ``order`` says how
    they interleave (a 0/1 arm per session, ``len(a) + len(b)`` of them; default: all of
    ``a``, then ``b``, i.e. one look at the end). Looks start once both arms have
    ``min_sessions``. Outcomes whose moments overflow float64 give NaN figures
    (``p_value`` NaN, nothing stopped).

    Raises:
        ValueError: a bad ``alpha``, ``tau``, ``min_sessions`` or ``order``.
    """
    _check(alpha, tau, min_sessions)
    x = [np.asarray(a, np.float64), np.asarray(b, np.float64)]
    sizes = (len(x[0]), len(x[1]))
    arm = np.repeat(np.array([0, 1]), sizes) if order is None else np.asarray(order, dtype=np.int64)
    if arm.shape != (sum(sizes),) or not np.isin(arm, (0, 1)).all() or int(arm.sum()) != sizes[1]:
        raise ValueError(
            f"order must give an arm (0 or 1) per session: {sizes[0]} zeros and {sizes[1]} ones"
        )
    outcomes = np.zeros(len(arm))
    for k in (0, 1):
        outcomes[arm == k] = x[k]
    (n_a, mean_a, var_a), (n_b, mean_b, var_b) = (
        _running_moments(outcomes, arm == k) for k in (0, 1)
    )
    looks = (n_a >= min_sessions) & (n_b >= min_sessions)
    estimate = None
    if min(sizes):
        with np.errstate(all="ignore"):
            estimate = float(x[1].mean() - x[0].mean())
        estimate = estimate if math.isfinite(estimate) else None
    if not looks.any():
        return SequentialResult(estimate, 1.0, None, None, False, None, None, sizes)
    na, nb = n_a[looks], n_b[looks]
    stats = look_statistics(
        mean_a[looks], var_a[looks], na, mean_b[looks], var_b[looks], nb, alpha=alpha, tau=tau
    )
    if np.isnan(stats.log_lr).any():
        return SequentialResult(estimate, math.nan, None, None, False, None, None, sizes)
    p_value = float(np.exp(-np.maximum(stats.log_lr, 0.0)).min())
    fired = np.flatnonzero(stats.log_lr >= math.log(1.0 / alpha))
    low, high = float(stats.low.max()), float(stats.high.min())
    if low > high:  # intervals that stopped overlapping: a misspecified model; show the last
        low, high = float(stats.low[-1]), float(stats.high[-1])
    if fired.size == 0:
        return SequentialResult(estimate, p_value, low, high, False, None, None, sizes)
    first = fired[0]
    winner = "b" if stats.diff[first] > 0 else "a"
    at = (int(na[first]), int(nb[first]))
    return SequentialResult(estimate, p_value, low, high, True, winner, at, sizes)


def _standard_normal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.standard_normal(shape)


class Simulation(NamedTuple):
    """Simulated experiments: per experiment whether a test stopped, for whom, when."""

    stopped: np.ndarray  # (experiments,) bool: declared a winner before the last look
    winner: np.ndarray  # (experiments,) +1 b, -1 a, 0 none
    sessions: np.ndarray  # (experiments,) sessions (both arms) at the stop, else the last look


def simulate(
    effect: float,
    experiments: int,
    sessions: int,
    look_every: int = 10,
    split: float = 0.5,
    alpha: float = ALPHA,
    tau: float = TAU,
    min_sessions: int = MIN_SESSIONS,
    test: str = "msprt",
    noise: Callable[[np.random.Generator, tuple[int, int]], np.ndarray] | None = None,
    seed: int = 0,
    chunk: int = 250,
) -> Simulation:
    """Simulated A/B tests of ``sessions`` sessions each, looked at every ``look_every``.

    A session goes to ``b`` with probability ``split``; its outcome is ``noise`` (default
    standard normal; any zero-mean, unit-variance draw ``noise(rng, shape)``) plus
    ``effect`` on ``b`` (so ``effect`` is in standard deviations). An experiment stops
    at the first look (both arms with ``min_sessions``) where the test rejects at
    ``alpha``. ``test="msprt"`` is :func:`look_statistics`; ``test="t"`` is Welch's
    t-test read at every look, what ``ab_report`` did before (its error rate grows with
    the looks).
    """
    from scipy import stats as sps

    if test not in ("msprt", "t"):
        raise ValueError(f"test must be 'msprt' or 't', got {test!r}")
    _check(alpha, tau, min_sessions)
    rng = np.random.default_rng(seed)
    at = np.arange(look_every - 1, sessions, look_every)
    out = [np.zeros(experiments, bool), np.zeros(experiments, np.int8), np.zeros(experiments)]
    for start in range(0, experiments, chunk):
        e = min(chunk, experiments - start)
        to_b = rng.random((e, sessions)) < split
        x = (noise or _standard_normal)(rng, (e, sessions)) + effect * to_b
        (n_a, mean_a, var_a), (n_b, mean_b, var_b) = (
            [m[:, at] for m in _running_moments(x, mask)] for mask in (~to_b, to_b)
        )
        if test == "msprt":
            look = look_statistics(mean_a, var_a, n_a, mean_b, var_b, n_b, alpha, tau)
            reject, diff = look.log_lr >= math.log(1.0 / alpha), look.diff
        else:
            with np.errstate(all="ignore"):
                va, vb = var_a / n_a, var_b / n_b
                diff = mean_b - mean_a
                dof = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
                reject = 2 * sps.t.sf(np.abs(diff) / np.sqrt(va + vb), dof) < alpha
        reject &= (n_a >= min_sessions) & (n_b >= min_sessions)
        stopped = reject.any(axis=1)
        first = np.where(stopped, reject.argmax(axis=1), len(at) - 1)
        rows = np.arange(e)
        out[0][start : start + e] = stopped
        out[1][start : start + e] = np.where(stopped, np.sign(diff[rows, first]), 0)
        out[2][start : start + e] = (n_a + n_b)[rows, first]
    return Simulation(*out)
