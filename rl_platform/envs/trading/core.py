"""The batched trading market: B copies of one market with N agents' books."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

from rl_platform.envs.base import StepResult, clip
from rl_platform.envs.trading.config import (
    AGENT_FEATURES,
    DISCRETE_ACTION_NAMES,
    DISCRETE_ACTIONS,
    DRIFT_PERSISTENCE,
    DRIFT_STD,
    HIDDEN_FEATURES,
    HISTORY,
    LEVELS,
    MARKET_FEATURES,
    MOMENTUM_TRADER_SIZE,
    NOISE_TRADER_SIZE,
    OBS_LIMIT,
    PNL_SCALE,
    RETURN_SCALE,
    SENTIMENT_NOISE,
    STATE_AGENT_FEATURES,
    STEPS_PER_YEAR,
    VAR_EPS,
    TradingConfig,
)
from rl_platform.envs.trading.layout import (
    _ACTION_RATE,
    _FEE,
    _GATE_OFFSET,
    _GATE_SCALE,
    _IMPACT,
    _INVERSE_DRIFT,
    _KEEP_LEVEL,
    _LOG_HIGH,
    _LOG_LOW,
    _MEAN_OF_3,
    _MINUS_ONE,
    _ONE,
    _PERSIST,
    _RATE,
    _SENSITIVITY,
    _SMALL,
    _TINY,
    _VAR_EPS,
    _ZERO,
    BOOK_ROWS,
    CASH,
    COST,
    DEVIATION,
    DRAWDOWN,
    EQUITY,
    FEE_PAID,
    FLOW,
    MEAN_ACTION,
    PEAK,
    PNL,
    PNL_MEAN,
    PNL_SQUARE,
    PNL_STD,
    POSITION,
    POSITION_SQUARED,
    SHARPE,
    SHARPE_STEP,
    STOP,
    TAKE,
    UNREALIZED,
    _c,
    _component_matrix,
    _feature_matrices,
    _observed_agent_matrix,
)
from rl_platform.envs.trading.rules import TradingRules


class TradingCore(TradingRules):
    """B copies of the trading market.

    Market state lives in one (B, M) array whose columns are the observed market features;
    per-agent state in a (B, BOOK_ROWS, N) book whose rows are contiguous for one copy.
    Observed agent features and reward components are linear in book rows, so each is one
    matmul. At B=1 the cost of a step is numpy's per-call overhead, hence few calls,
    float64 throughout, 0-d array constants and persistent views updated in place.
    """

    reward_components: ClassVar[tuple[str, ...]] = (
        "profit", "sharpe", "cooperation", "exploration", "risk", "transaction_cost",
    )  # fmt: skip
    default_reward_weights: ClassVar[dict[str, float]] = {
        "profit": 0.4,
        "sharpe": 0.3,
        "cooperation": 0.2,
        "exploration": 0.1,
        "risk": 1.0,
        "transaction_cost": 1.0,
    }
    state_fields: ClassVar[tuple[str, ...]] = ("_returns", "_market", "_book")

    def __init__(self, config: TradingConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        if config.random_levels and batch_size != 1:
            raise ValueError(
                f"random_levels needs one env copy per core (the level is per core), "
                f"got {batch_size} copies"
            )
        b, n, w = batch_size, config.num_agents, config.window
        self._n, self._w, self._discrete = n, w, config.discrete
        self._returns = np.zeros((b, HISTORY))  # log returns, newest last
        self._window_returns = self._returns[:, -w:]
        # Market columns: observed: the return window (W), MARKET_FEATURES | in the state
        # only: HIDDEN_FEATURES | price.
        names = (*MARKET_FEATURES, *HIDDEN_FEATURES, "price")
        self._column = {name: w + i for i, name in enumerate(names)}
        self._observed_width = self._column["crowd_flow"]
        self._state_width = self._column["price"]
        self._market = np.zeros((b, self._column["price"] + 1))
        # (B, 1) views of single market columns.
        self._m = {name: self._market[:, i : i + 1] for name, i in self._column.items()}
        self._book = np.zeros((b, BOOK_ROWS, n))
        # Views the step updates in place (made once: a view costs as much as an op).
        self._row = tuple(self._book[:, i] for i in range(BOOK_ROWS))  # each (B, N)
        self._gates = self._book[:, STOP : TAKE + 1]
        self._mean_action = self._book[:, MEAN_ACTION:]
        self._component_rows = self._book[:, DRAWDOWN : SHARPE_STEP + 1]
        self._observed_rows = self._book[:, : DRAWDOWN + 1].transpose(0, 2, 1)
        self._action = np.zeros((b, 3, n))  # scratch: this step's actions, rows contiguous
        self._target_action, self._width_action = self._action[:, 0], self._action[:, 1:]
        self._draws = np.zeros((b, 4))  # scratch: this step's normal draws
        self._draw_columns = tuple(self._draws[:, i : i + 1] for i in range(4))
        self._obs = np.zeros((b, n, config.obs_dim), dtype=np.float32)
        self._state = np.zeros((b, self._state_width + STATE_AGENT_FEATURES * n), dtype=np.float32)
        self._state_scale = np.ones(self._state.shape[1], dtype=np.float32)
        self._state_scale[self._column["drift"]] = 1.0 / DRIFT_STD
        self._state_scale[self._state_width + n * UNREALIZED :][:n] = PNL_SCALE
        self._history_features, centering = _feature_matrices(w)
        # window returns -> [scaled window, its centered log prices] (one matmul), and
        # their squares -> [mean square return, (2 std of log prices)^2]
        self._window_maps = np.concatenate([RETURN_SCALE * np.eye(w), centering], axis=1)
        self._square_means = np.zeros((2 * w, 2))
        self._square_means[:w, 0], self._square_means[w:, 1] = 1.0 / w, 4.0 / w
        self._window_mean = np.full(w, 1.0 / w)
        self._denominators = np.zeros((b, 2))  # scratch: RSI's and Bollinger's
        trend = self._column["trend"]
        self._trend_gap = self._market[:, trend : trend + 2]
        self._rsi_bollinger = self._market[:, trend + 2 : trend + 4]
        self._ones = np.ones((n, 1))
        self._observed_agent = _observed_agent_matrix()
        weights = np.array([self.reward_weights[c] for c in self.reward_components])
        self._components = _component_matrix(weights, n)
        self._set_level()

        self.observation_space = gym.spaces.Box(
            -OBS_LIMIT, OBS_LIMIT, (config.obs_dim,), np.float32
        )
        self.state_space = gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, self._state.shape[1:], np.float32)
        self.action_space = (
            gym.spaces.Discrete(len(DISCRETE_ACTIONS))
            if config.discrete
            else gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        )
        self.action_names = (
            DISCRETE_ACTION_NAMES
            if config.discrete
            else ("target position", "stop-loss", "take-profit")
        )

    @property
    def num_agents(self) -> int:  # noqa: D102
        return self._n

    def _set_level(self) -> None:
        """Per-level constants of the step."""
        vol, crowd = LEVELS[self.get_task()]
        noise_traders, momentum_traders = crowd - crowd // 2, crowd // 2
        self._sigma = vol / np.sqrt(STEPS_PER_YEAR)
        # Scales of the step's normal draws: noise traders' net order, price noise, drift
        # innovation, sentiment noise.
        self._draw_scale = np.array(
            [
                NOISE_TRADER_SIZE * np.sqrt(noise_traders),
                self._sigma,
                DRIFT_STD * np.sqrt(1.0 - DRIFT_PERSISTENCE**2),
                SENTIMENT_NOISE,
            ]
        )
        self._momentum_size = _c(MOMENTUM_TRADER_SIZE * momentum_traders)
        self._per_participant = _c(1.0 / (self._n + crowd))
        self._dt = _c(1.0 / self.config.episode_length)
        self._last_step = 0.5 / self.config.episode_length

    def switch_task(self, level: str) -> None:
        """Switch the level now: the next step draws the new level's volatility and crowd.

        The return history, the drift regime and every book are kept, so the market
        carries on from where it is with new noise and a new crowd.
        """
        super().switch_task(level)
        self._set_level()

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:  # noqa: D102
        if self.config.random_levels:
            self._task = self.config.random_levels[rng.integers(len(self.config.random_levels))]
        self._set_level()
        rows = np.arange(self.batch_size) if mask is None else np.flatnonzero(mask)
        draws = rng.standard_normal((len(rows), HISTORY + 2))
        col = self._column
        market = np.zeros((len(rows), self._market.shape[1]))
        drift = DRIFT_STD * draws[:, 0]
        market[:, col["drift"]] = drift
        market[:, col["sentiment"]] = drift / DRIFT_STD + SENTIMENT_NOISE * draws[:, 1]
        market[:, [col["time_left"], col["price"]]] = 1.0
        self._market[rows] = market
        # A history that led here, so indicators mean something from the first step.
        self._returns[rows] = drift[:, None] + self._sigma * draws[:, 2:]
        book = np.zeros((BOOK_ROWS, self._n))
        book[[CASH, EQUITY, PEAK]] = 1.0
        book[PNL_STD] = np.sqrt(VAR_EPS)
        # The default action's stop and take-profit; the mean action starts at it too, so
        # doing nothing earns no exploration bonus.
        default = DISCRETE_ACTIONS[2] if self._discrete else np.zeros(3)
        book[STOP : TAKE + 1] = default[1:, None] * _GATE_SCALE + _GATE_OFFSET
        book[MEAN_ACTION:] = default[:, None]
        self._book[rows] = book
        self._refresh_market()

    def _refresh_market(self) -> None:
        """Market indicators from the return history (deterministic, every copy)."""
        market, m, w = self._market, self._m, self._w
        maps = np.dot(self._window_returns, self._window_maps)
        window = maps[:, :w]
        market[:, :w] = window
        market[:, w : w + 4] = np.dot(self._returns, self._history_features)  # MACD .. gap
        roots = np.sqrt(np.dot(np.square(maps), self._square_means))  # volatility, 2 std
        m["volatility"][...] = roots[:, :1]
        # RSI as (gains - losses) / (gains + losses) over the window, in [-1, 1], and the
        # Bollinger position as the gap / (2 std).
        denominators = self._denominators
        denominators[:, 0] = np.dot(np.abs(window), self._window_mean)
        denominators[:, 1] = roots[:, 1]
        denominators += _SMALL
        np.divide(self._trend_gap, denominators, out=self._rsi_bollinger)

    def observe(self) -> np.ndarray:  # noqa: D102
        obs = self._obs
        width = self._observed_width
        obs[..., :width] = self._market[:, None, :width]
        own = np.dot(self._observed_rows, self._observed_agent)
        obs[..., width : width + len(AGENT_FEATURES)] = own
        # A new array: the views hand rows to RLlib, which keeps them.
        return clip(obs, -OBS_LIMIT, OBS_LIMIT)

    def global_state(self) -> np.ndarray:  # noqa: D102
        state = self._state
        width = self._state_width
        state[:, :width] = self._market[:, :width]
        state[:, width:] = self._book[:, :STATE_AGENT_FEATURES].reshape(self.batch_size, -1)
        state *= self._state_scale
        return clip(state, -OBS_LIMIT, OBS_LIMIT)

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:  # noqa: D102
        row, m, action = self._row, self._m, self._action
        if self._discrete:
            action[...] = DISCRETE_ACTIONS[actions].transpose(0, 2, 1)
        else:
            clip(actions.transpose(0, 2, 1), _MINUS_ONE, _ONE, out=action)
        cash, pos, cost = row[CASH], row[POSITION], row[COST]

        # A position whose price crossed the stop or take-profit set with it is closed.
        move = row[UNREALIZED] / (np.abs(cost) + _TINY)  # return since entry, signed
        target = np.where((move > row[STOP]) & (move < row[TAKE]), self._target_action, _ZERO)
        delta = target - pos

        # Everyone trades at the price the joint order flow (with the crowd's) pushes to.
        rng.standard_normal(out=self._draws)
        self._draws *= self._draw_scale
        noise_flow, price_noise, drift_noise, sentiment_noise = self._draw_columns
        agent_flow = np.dot(delta, self._ones)  # (B, 1)
        crowd = np.add(
            np.tanh(m["macd"] * _SENSITIVITY) * self._momentum_size,
            noise_flow,
            out=m["crowd_flow"],
        )
        impact = (agent_flow + crowd) * _IMPACT
        fill = (impact + _ONE) * m["price"]
        notional = delta * fill
        fee = np.abs(notional, out=row[FEE_PAID])
        fee *= _FEE
        cash -= notional
        cash -= fee
        # Cost basis: the kept fraction of the old one, plus what was bought at the fill.
        kept = clip(target / (pos + _TINY), _ZERO, _ONE)
        cost *= kept
        cost += (target - kept * pos) * fill
        pos[...] = target
        np.multiply(self._width_action, _GATE_SCALE, out=self._gates)
        self._gates += _GATE_OFFSET

        # The price: the drift regime, noise, the impact that stays, a pull to fundamental.
        # (Per-copy values are (B, 1) views of market columns; a ufunc writing into one
        # with out= costs half of computing a new array and copying it in.)
        logp = m["log_price"]
        new_logp = logp * _KEEP_LEVEL + m["drift"] + price_noise + np.log1p(impact)
        clip(new_logp, _LOG_LOW, _LOG_HIGH, out=new_logp)
        history = self._returns
        history[:, :-1] = history[:, 1:]
        np.subtract(new_logp, logp, out=history[:, -1:])
        logp[...] = new_logp
        price = np.exp(new_logp, out=m["price"])
        drift = np.add(m["drift"] * _PERSIST, drift_noise, out=m["drift"])
        # Sentiment: the drift of the next step's return (in units of its std), blurred.
        np.add(drift * _INVERSE_DRIFT, sentiment_noise, out=m["sentiment"])
        volume = np.dot(np.abs(delta), self._ones) + np.abs(crowd)
        np.multiply(volume, self._per_participant, out=m["volume"])
        m["agent_flow"][...] = agent_flow
        time_left = np.subtract(m["time_left"], self._dt, out=m["time_left"])
        self._refresh_market()

        # Accounting: equity, PnL and its running moments, drawdown.
        equity = pos * price
        np.subtract(equity, cost, out=row[UNREALIZED])
        equity += cash
        pnl = np.subtract(equity, row[EQUITY], out=row[PNL])
        row[EQUITY][...] = equity
        peak = np.maximum(row[PEAK], equity, out=row[PEAK])
        np.subtract(peak, equity, out=row[DRAWDOWN])
        mean, square = row[PNL_MEAN], row[PNL_SQUARE]
        mean += (pnl - mean) * _RATE
        square += (pnl * pnl - square) * _RATE
        std = np.sqrt(square - mean * mean + _VAR_EPS, out=row[PNL_STD])
        np.divide(mean, std, out=row[SHARPE])
        # |pnl| <= sqrt(square / STATS_RATE): the step's Sharpe is within +-4.5.
        np.divide(pnl, np.sqrt(square + _VAR_EPS), out=row[SHARPE_STEP])
        np.multiply(pos, pos, out=row[POSITION_SQUARED])
        row[FLOW][...] = np.abs(agent_flow)
        change = action - self._mean_action
        row[DEVIATION][...] = np.dot(_MEAN_OF_3, np.abs(change))
        change *= _ACTION_RATE
        self._mean_action += change

        # Components and reward (rows 0-5 and 6), linear in book rows DRAWDOWN..SHARPE_STEP.
        # np.dot of (7, R) and (B, R, N) is (7, B, N): components first, no transpose
        parts = np.dot(self._components, self._component_rows).astype(np.float32)
        return StepResult(
            rewards=self.share(parts[6]),
            components=dict(zip(self.reward_components, parts)),
            stacked=parts[:6],
            terminated=np.zeros(self.batch_size, dtype=bool),
            truncated=time_left[:, 0] < self._last_step,
        )
