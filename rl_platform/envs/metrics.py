"""Coordination metrics of played episodes: pure numpy, shared by the envs and the suite.

Arrays recorded over an episode are indexed time first: ``(T, B, ...)`` for T steps of B
env copies, with ``alive`` (T, B) true where step t belonged to copy b's episode (the
step that ended it included). Steps where ``alive`` is false are ignored everywhere.
Every function returns finite numbers: where a figure is undefined (no data, no
variation) it returns the value its docstring names instead of NaN.
"""

from __future__ import annotations

import numpy as np

# Keeps the Gini of all-zero values at 0 (and equal to the env rewards' figure).
GINI_EPS = 1e-6
# A variance below this share of the mean square counts as zero (rounding of constants).
RELATIVE_VARIANCE_FLOOR = 1e-12


def gini(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gini coefficient of non-negative values along `axis`; 0 when all are 0.

    ``G = sum_ij |x_i - x_j| / (2 n sum_i x_i)``, computed from the sorted values as
    ``sum_i (2i - n - 1) x_(i) / (n sum_i x_i)``, i = 1..n. 0 when all values are equal,
    (n - 1) / n when one holds everything. (The resource allocation env's ``fairness``
    reward is 1 - this, every step.)

    Args:
        values: non-negative values, any shape.
        axis: the axis whose values are compared.

    Returns:
        The Gini coefficients, `values`' shape without `axis`.
    """
    if axis != -1:
        values = np.moveaxis(values, axis, -1)
    n = values.shape[-1]
    weights = (2.0 * np.arange(1, n + 1) - n - 1) / n
    return np.dot(np.sort(values, axis=-1), weights) / (values.sum(axis=-1) + GINI_EPS / (2 * n))


def _weights(alive: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """``alive`` as float64 weights broadcastable to time-first `shape` (all ones if None)."""
    if alive is None:
        return np.ones(shape[:1] + (1,) * (len(shape) - 1))
    alive = np.asarray(alive, dtype=np.float64)
    return alive.reshape(alive.shape + (1,) * (len(shape) - alive.ndim))


def masked_mean(values: np.ndarray, alive: np.ndarray | None = None, default: float = 0.0) -> float:
    """Mean of `values` (T, B, ...) over the alive steps (T, B) and every other axis.

    Returns `default` when no step is alive.
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.broadcast_to(_weights(alive, values.shape), values.shape)
    total = weights.sum()
    return float((values * weights).sum() / total) if total > 0 else default


def masked_sum(values: np.ndarray, alive: np.ndarray | None = None) -> np.ndarray:
    """Sum over time of `values` (T, B, ...) at alive steps: (B, ...) float64."""
    values = np.asarray(values, dtype=np.float64)
    return (values * _weights(alive, values.shape)).sum(axis=0)


def last_alive(values: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Each copy's value at its last alive step: `values` (T, B, ...) -> (B, ...).

    A copy with no alive step gets its value at t = 0.
    """
    alive = np.asarray(alive, dtype=bool)
    last = alive.shape[0] - 1 - np.argmax(alive[::-1], axis=0)  # (B,)
    last = np.where(alive.any(axis=0), last, 0)
    return np.asarray(values)[last, np.arange(alive.shape[1])]


def time_variance(values: np.ndarray, alive: np.ndarray | None = None) -> np.ndarray:
    """Population variance over time at alive steps: (T, B, ...) -> (B, ...) float64.

    0 where a copy has fewer than two alive steps, or where the variance is below
    ``RELATIVE_VARIANCE_FLOOR`` times the mean square (the rounding error of a constant).
    """
    values = np.asarray(values, dtype=np.float64)
    weights = _weights(alive, values.shape)
    count = weights.sum(axis=0)
    safe = np.maximum(count, 1.0)
    mean = (values * weights).sum(axis=0) / safe
    variance = (np.square(values - mean) * weights).sum(axis=0) / safe
    square = (np.square(values) * weights).sum(axis=0) / safe
    return np.where((count >= 2) & (variance > RELATIVE_VARIANCE_FLOOR * square), variance, 0.0)


def bullwhip_ratio(
    orders: np.ndarray, demand: np.ndarray, alive: np.ndarray | None = None
) -> np.ndarray:
    """Bullwhip ratio of each echelon: ``Var_t(orders_i) / Var_t(demand)``, per copy.

    The standard measure of order amplification (Lee, Padmanabhan and Whang 1997;
    Chen et al. 2000): 1 when an echelon's orders vary as much as customer demand (e.g.
    it passes demand on), above 1 when it amplifies, below 1 when it smooths. Orders
    ``demand + c (demand - mean)`` give ``(1 + c)^2``. Variances are population
    variances over the alive steps (:func:`time_variance`).

    Args:
        orders: (T, N) or (T, B, N), each echelon's orders per step.
        demand: (T,) or (T, B), customer demand per step, in the orders' units.
        alive: (T,) or (T, B) steps that count; all when None.

    Returns:
        (N,) or (B, N) float64 ratios; where demand did not vary (fewer than two steps,
        or constant demand) the ratio is 1.0 (no amplification can be measured).
    """
    order_variance = time_variance(orders, alive)
    demand_variance = time_variance(demand, alive)[..., None]
    defined = demand_variance > 0
    return np.where(defined, order_variance / np.where(defined, demand_variance, 1.0), 1.0)


def fill_rate(
    demand: np.ndarray, met: np.ndarray, alive: np.ndarray | None = None
) -> np.ndarray | float:
    """Fill rate (type-2 service level): demand met from stock on time / total demand.

    Args:
        demand: (T, ...) demand per step.
        met: (T, ...) the part of each step's demand shipped that step (<= demand).
        alive: (T, ...) leading axes of `demand` that count; all when None.

    Returns:
        ``sum_t met / sum_t demand`` per remaining index (a float for 1-d inputs), 1.0
        where there was no demand.
    """
    total = masked_sum(demand, alive)
    served = masked_sum(np.minimum(met, demand), alive)
    rate = np.where(total > 0, served / np.where(total > 0, total, 1.0), 1.0)
    return float(rate) if rate.ndim == 0 else rate


def pairwise_correlation(values: np.ndarray, alive: np.ndarray | None = None) -> float:
    """Mean Pearson correlation over time between the agents' values, per copy.

    For every copy b, agent pair i < j and value dimension d, the correlation over the
    alive steps of ``values[:, b, i, d]`` and ``values[:, b, j, d]``; the mean over all of
    them. Pairs where either agent's value does not vary in that copy (or with fewer
    than two alive steps) are skipped.

    Args:
        values: (T, B, N) or (T, B, N, *shape) per-agent values.
        alive: (T, B) steps that count; all when None.

    Returns:
        A float in [-1, 1]: 1 when agents move identically, -1 for mirror images, about
        0 when independent; 0.0 when no pair is defined.
    """
    x = np.asarray(values, dtype=np.float64)
    t, b, n = x.shape[:3]
    if n < 2 or t < 2:
        return 0.0
    x = x.reshape(t, b, n, -1)  # (T, B, N, D)
    weights = _weights(alive, x.shape)
    count = weights.sum(axis=0)  # (B, 1, 1)
    mean = (x * weights).sum(axis=0) / np.maximum(count, 1.0)
    centered = (x - mean) * weights
    covariance = np.einsum("tbid,tbjd->bijd", centered, centered)  # (B, N, N, D)
    variance = np.einsum("biid->bid", covariance)  # (B, N, D)
    square = (np.square(x) * weights).sum(axis=0)  # (B, N, D)
    varies = (variance > RELATIVE_VARIANCE_FLOOR * square) & (variance > 0) & (count >= 2)
    i, j = np.triu_indices(n, k=1)
    defined = varies[:, i] & varies[:, j]  # (B, pairs, D)
    if not defined.any():
        return 0.0
    scale = np.sqrt(np.where(defined, variance[:, i] * variance[:, j], 1.0))
    correlation = np.clip(covariance[:, i, j] / scale, -1.0, 1.0)
    return float(correlation[defined].mean())


def _kappa(first: np.ndarray, second: np.ndarray, num_choices: int) -> float | None:
    """Cohen's kappa of paired integer choices, None where undefined (``p_e = 1``)."""
    observed = float(np.mean(first == second))
    counts = np.bincount(first, minlength=num_choices), np.bincount(second, minlength=num_choices)
    expected = float(np.dot(*counts)) / (first.size**2)
    if expected >= 1.0 - 1e-12:
        return None
    return float(np.clip((observed - expected) / (1.0 - expected), -1.0, 1.0))


def cohen_kappa(first: np.ndarray, second: np.ndarray) -> float:
    """Cohen's kappa of two agents' discrete choices (paired samples).

    ``kappa = (p_o - p_e) / (1 - p_e)``: the observed agreement rate ``p_o`` beyond the
    agreement ``p_e = sum_k p_1(k) p_2(k)`` expected if they chose independently with
    their own marginals. 1 for identical choices, about 0 for independent ones, negative
    for systematic disagreement.

    Args:
        first: (M,) non-negative integer choices of one agent.
        second: (M,) the other's, paired with `first`.

    Returns:
        Kappa in [-1, 1]; 0.0 when undefined (no samples, or ``p_e = 1``: both always
        made the same single choice).
    """
    first = np.asarray(first, dtype=np.int64).ravel()
    second = np.asarray(second, dtype=np.int64).ravel()
    if first.size == 0:
        return 0.0
    kappa = _kappa(first, second, int(max(first.max(), second.max())) + 1)
    return 0.0 if kappa is None else kappa


def action_correlation(
    actions: np.ndarray, alive: np.ndarray | None = None, discrete: bool = False
) -> float:
    """How alike the agents act: the mean over agent pairs of their action agreement.

    Continuous actions (T, B, N, *shape): :func:`pairwise_correlation`, the Pearson
    correlation over time per copy and action dimension, averaged over copies,
    dimensions and pairs (pairs where an agent's action does not vary skipped).
    Discrete actions (T, B, N): :func:`cohen_kappa` of each pair's choices pooled over
    all alive steps of all copies (short episodes make per-copy tables degenerate),
    averaged over pairs (pairs that both always made the same single choice skipped).

    Args:
        actions: (T, B, N, *action_shape) the actions taken; integer indices if discrete.
        alive: (T, B) steps that count; all when None.
        discrete: whether actions are choices (kappa) rather than values (Pearson).

    Returns:
        A float in [-1, 1]: 1 when agents act identically, about 0 when independently,
        negative when they act against each other (-1 for mirrored continuous actions);
        0.0 when undefined (fewer than two agents, no data, no pair defined).
    """
    actions = np.asarray(actions)
    if not discrete:
        return pairwise_correlation(actions, alive)
    n = actions.shape[2]
    mask = np.ones(actions.shape[:2], dtype=bool) if alive is None else np.asarray(alive, bool)
    choices = actions.reshape(actions.shape[:3])[mask].astype(np.int64)  # (M, N)
    if choices.size == 0 or n < 2:
        return 0.0
    k = int(choices.max()) + 1
    kappas = [_kappa(choices[:, i], choices[:, j], k) for i, j in zip(*np.triu_indices(n, 1))]
    defined = [kappa for kappa in kappas if kappa is not None]
    return float(np.mean(defined)) if defined else 0.0


def clip_unit(value: float) -> float:
    """`value` clipped to [0, 1] as a Python float (0.0 for NaN)."""
    return float(np.clip(np.nan_to_num(value, nan=0.0), 0.0, 1.0))
