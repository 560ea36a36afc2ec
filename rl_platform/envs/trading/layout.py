"""The trading core's book layout and the linear maps over its state.

Rows of the per-agent book, the matrices that map book rows to observed agent features
and reward components, the maps from the return history to market indicators, and the
step's constants as 0-d arrays.
"""

from __future__ import annotations

import numpy as np

from rl_platform.envs.trading.config import (
    ACTION_MEAN_RATE,
    AGENT_FEATURES,
    COOPERATION_SCALE,
    DRIFT_PERSISTENCE,
    DRIFT_STD,
    EXPLORATION_SCALE,
    FEE,
    HISTORY,
    IMPACT,
    LOG_PRICE_LIMIT,
    MOMENTUM_SENSITIVITY,
    PNL_SCALE,
    PRICE_SCALE,
    PROFIT_SCALE,
    RETURN_SCALE,
    REVERSION,
    RISK_DRAWDOWN,
    RISK_POSITION,
    SHARPE_SCALE,
    STATS_RATE,
    STOP_RANGE,
    TAKE_RANGE,
    VAR_EPS,
    Z_95,
)

# Rows of the per-agent book, (B, BOOK_ROWS, N). Rows 0-7 are what the agent observes
# (mapped by _observed_agent_matrix), rows 7-13 what the reward components are linear in.
CASH, POSITION, UNREALIZED, EQUITY, PNL_MEAN, PNL_STD, SHARPE, DRAWDOWN = range(8)
PNL, FEE_PAID, FLOW, DEVIATION, POSITION_SQUARED, SHARPE_STEP = range(8, 14)
COST, PEAK, PNL_SQUARE, STOP, TAKE, MEAN_ACTION = range(14, 20)
BOOK_ROWS = MEAN_ACTION + 3


def _observed_agent_matrix() -> np.ndarray:
    """Book rows CASH..DRAWDOWN -> AGENT_FEATURES (scaled; VaR from mean and std)."""
    m = np.zeros((DRAWDOWN + 1, len(AGENT_FEATURES)))
    m[CASH, 0] = m[POSITION, 1] = m[EQUITY, 3] = m[SHARPE, 5] = 1.0
    m[UNREALIZED, 2] = m[DRAWDOWN, 6] = PNL_SCALE
    m[PNL_STD, 4], m[PNL_MEAN, 4] = Z_95 * PNL_SCALE, -PNL_SCALE  # 95% VaR
    return m


def _component_matrix(weights: np.ndarray, num_agents: int) -> np.ndarray:
    """Book rows DRAWDOWN..SHARPE_STEP -> the six components and their weighted sum."""
    rows = {name: i for i, name in enumerate(range(DRAWDOWN, SHARPE_STEP + 1))}
    m = np.zeros((7, len(rows)))
    m[0, rows[PNL]] = m[0, rows[FEE_PAID]] = PROFIT_SCALE  # profit: PnL before fees
    m[1, rows[SHARPE_STEP]] = SHARPE_SCALE
    m[2, rows[FLOW]] = -COOPERATION_SCALE / num_agents
    m[3, rows[DEVIATION]] = EXPLORATION_SCALE
    m[4, rows[POSITION_SQUARED]], m[4, rows[DRAWDOWN]] = -RISK_POSITION, -RISK_DRAWDOWN
    m[5, rows[FEE_PAID]] = -PROFIT_SCALE
    m[6] = weights @ m[:6]  # the reward: what BatchedCore.weigh would sum
    return m


def _c(value: float) -> np.ndarray:
    """A float64 0-d array: numpy applies it faster than a Python float (hot paths)."""
    return np.array(value, dtype=np.float64)


# Constants of the step as 0-d arrays (see `_c`).
_ZERO, _ONE, _MINUS_ONE, _TINY, _SMALL = _c(0.0), _c(1.0), _c(-1.0), _c(1e-300), _c(1e-9)
_IMPACT, _FEE = _c(IMPACT), _c(FEE)
_KEEP_LEVEL, _PERSIST = _c(1.0 - REVERSION), _c(DRIFT_PERSISTENCE)
_INVERSE_DRIFT, _SENSITIVITY = _c(1.0 / DRIFT_STD), _c(MOMENTUM_SENSITIVITY)
_LOG_LOW, _LOG_HIGH = _c(-LOG_PRICE_LIMIT), _c(LOG_PRICE_LIMIT)
_RATE, _ACTION_RATE, _VAR_EPS = _c(STATS_RATE), _c(ACTION_MEAN_RATE), _c(VAR_EPS)
# (stop action, take action) in [-1, 1] -> (-stop width, take-profit width)
_GATE_SCALE = np.array(
    [[-(STOP_RANGE[1] - STOP_RANGE[0]) / 2], [(TAKE_RANGE[1] - TAKE_RANGE[0]) / 2]]
)
_GATE_OFFSET = np.array(
    [[-(STOP_RANGE[1] + STOP_RANGE[0]) / 2], [(TAKE_RANGE[1] + TAKE_RANGE[0]) / 2]]
)
_MEAN_OF_3 = np.full(3, 1.0 / 3.0)


def _ema_weights(span: int, length: int) -> np.ndarray:
    """Normalized EMA weights over `length` points, oldest first (a truncated EMA)."""
    weights = (1.0 - 2.0 / (span + 1.0)) ** np.arange(length - 1, -1, -1, dtype=np.float64)
    return weights / weights.sum()


def _feature_matrices(window: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear maps from returns to market features, scaled for observation.

    The first maps the return history (H,) to MACD, its signal line, the window's mean
    return (trend) and the current log price minus the window's mean (gap); the second
    maps the window's returns (W,) to its log prices minus their mean (for the Bollinger
    width). All are linear in the log prices relative to the current one, which are
    linear in the returns, so a matmul gives them and no EMA state has to be carried.
    (Two small matmuls, not one wide one: OpenBLAS threads wide ones, which costs far
    more than it saves at these sizes.)
    """
    h, w = HISTORY, window
    # relative[j, k]: weight of return j in (log price after return k) - current log price.
    relative = -np.tril(np.ones((h, h)), k=-1)
    macd_at_lag = np.zeros((h, h))  # column L: the MACD as of L steps ago
    for lag in range(h - 1):
        usable = h - lag
        macd_at_lag[:usable, lag] = _ema_weights(12, usable) - _ema_weights(26, usable)
    signal = macd_at_lag @ _ema_weights(9, h)[::-1]  # EMA 9 of the MACD series
    prices = relative[:, h - w :]
    mean_price = prices.mean(axis=1)
    trend = np.zeros(h)
    trend[h - w :] = RETURN_SCALE / w
    history = np.stack(
        [
            relative @ macd_at_lag[:, 0] * PRICE_SCALE,
            relative @ signal * PRICE_SCALE,
            trend,
            -mean_price * PRICE_SCALE,
        ],
        axis=1,
    )
    centered = (prices - mean_price[:, None])[h - w :, :] * PRICE_SCALE
    return np.ascontiguousarray(history), np.ascontiguousarray(centered)
