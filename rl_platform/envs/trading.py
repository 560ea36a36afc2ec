"""Trading: N agents trade one synthetic asset in a shared market with price impact.

Each agent starts with a balance of 100,000; every money figure is in units of it (cash
1.0 at the start). A position runs from -1 (full short) to +1 (full long) units, one unit
being worth one initial balance at the starting price of 1.0.

Market. Every step the log price moves by a latent drift (an AR(1) regime: persistence
0.97, stationary std 0.002 per step), Gaussian noise of the level's volatility
(annualized, divided by sqrt(252)), a pull of 1% of the gap back to the fundamental (log
price 0) and the impact of the step's order flow. Everyone trades at
``price * (1 + 0.0005 * flow)``, ``flow`` being the agents' net order (in units) plus the
background crowd's, and that impact stays in the price. The crowd is simulated, not
agents: noise traders (random orders, std 0.5 units each) and momentum traders (up to 1
unit each, following the MACD), half each. Every trade pays a fee of 0.05% of its
notional. The drift persists, so trends carry information, and a noisy sentiment signal
leaks the next step's drift (correlation 0.7). Episodes last ``episode_length`` steps
(default 200) and are truncated, never terminated; the log price is clipped to [-3, 3]
(no bankruptcy: cash may go negative, observations are clipped).

=========  ==========  ====================  =================
level      volatility  per-step volatility   crowd (noise+mom)
=========  ==========  ====================  =================
easy       0.1         0.63%                 2 (1+1)
medium     0.3         1.9%                  5 (3+2)
hard       0.5         3.1%                  10 (5+5)
expert     0.8         5.0%                  20 (10+10)
=========  ==========  ====================  =================

The drift does not grow with the volatility, so higher levels have less signal per unit
of noise, larger drawdowns and more stops hit.

Observation (``obs_dim``, default 50, float32, clipped to [-10, 10]). With W =
``window`` (default 20), the first ``W + 18`` entries are features and zeros pad the
rest (``obs_dim`` must leave room for them):

* ``0 .. W-1``: the last W log returns x 30, oldest first;
* ``W + 0 .. 10`` (``MARKET_FEATURES``): MACD and its signal line (EMA 12 - EMA 26 and
  EMA 9 of it, of the log price, over the last 64 steps, x 10), trend (mean return of the
  window x 30), gap (log price minus the window's mean, x 10), RSI (gains minus losses
  over gains plus losses in the window, in [-1, 1]), Bollinger position (gap over two
  standard deviations of the window's log prices), volume (mean absolute order per
  participant), sentiment (next step's drift in units of its std, plus N(0, 1) noise),
  volatility (root mean square return of the window x 30), log price, time remaining
  (1 -> 0);
* ``W + 11 .. 17`` (``AGENT_FEATURES``), the agent's own: cash, position, unrealized PnL
  since entry (x 10), 95% VaR of its step PnL (x 10), rolling Sharpe of its step PnL
  (EMA mean over EMA std), equity, drawdown from its peak equity (x 10).

Global state (``W + 14 + 4N``): the market features, the crowd's and the agents' net
order flow, the latent drift (in units of its std), then every agent's cash, position,
unrealized PnL (x 10) and equity (all agents' cash first).

Action: ``Box(-1, 1, (3,))``: target position, stop-loss width (-1 .. 1 -> 1% .. 10%)
and take-profit width (-1 .. 1 -> 2% .. 20%). Values outside [-1, 1] are clipped. A
position whose return since entry (average cost) has crossed the stop (against it) or
the take-profit (for it) set with it is closed at the agent's next step, whatever the
agent then asks. With ``discrete: true``, ``Discrete(5)``: index 0 .. 4 = target -1,
-0.5, 0, 0.5, 1, each with the widest stop (10%) and take-profit (20%); 2 is flat.

Reward components (per agent, unweighted; default weights in brackets):
``profit`` (0.4) the step's mark-to-market PnL before fees (slippage included) x 10;
``sharpe`` (0.3) the step's PnL after fees over the root of the running mean of its
square, x 0.1 (within +-0.45); ``cooperation`` (0.2) minus 0.05 x the agents' absolute
net order per agent, shared by all (herding moves the price against everyone);
``exploration`` (0.1) 0.05 x the mean absolute gap between the action and the agent's
running mean action; ``risk`` (1.0) minus 0.001 x position^2 and 0.02 x drawdown;
``transaction_cost`` (1.0) minus the fee paid x 10.

Baselines (observations only): ``momentum`` (default) targets the window's trend over
its volatility (a t-statistic) / 2, sized down when the volatility exceeds 1% a step,
in steps of 0.5; ``buy_and_hold`` is always fully long; ``mean_reversion`` bets against
the Bollinger position; ``flat`` is the default action (never trades, earns exactly 0).
The first three use the widest stops.

Strategies for a meta-controller (``hierarchy:``; ``STRATEGIES``, each a
:class:`Strategy`: a rule over the trend's t-statistic, the sentiment, the Bollinger
position and the gap to the fundamental, sized by volatility, with its own stops):
``aggressive`` (full-size trend following), ``conservative`` (half size on strong trends,
tight stops), ``balanced`` (half-size trend with a sentiment tilt), ``contrarian``
(against the gap to the fundamental) and ``momentum`` (the baseline's rule). Mean
per-agent return over 500 episodes with the exploration bonus off
(``python bench/hierarchical.py``):

=====  ==========  ============  ========  ==========  ========
level  aggressive  conservative  balanced  contrarian  momentum
=====  ==========  ============  ========  ==========  ========
easy   0.58        0.34          0.48      -0.02       0.64
hard   -0.59       -0.00         -0.01     0.11        -0.19
=====  ==========  ============  ========  ==========  ========

Trends pay in calm markets, the pull back to the fundamental in volatile ones, so no
strategy is best everywhere. ``random_levels`` draws each episode's level from a list
(one env copy per core), a setting where the choice has to follow the market.

Constraints a shield can enforce (:mod:`rl_platform.safety`): ``max_position`` (the
absolute position held after the step, 0 where a stop or take-profit closes it, above
the limit in units) and ``max_order`` (the absolute position change the action asks for
above the limit; closes forced by a stop or take-profit never count).

Potentials for reward shaping, per agent and in the ``profit`` component's units (x 10
per unit of initial balance): ``position_risk``, minus the position's value times the
window's realized volatility (the typical size of the next step's PnL, so 0 when flat),
and ``equity``, the mark-to-market wealth gained since the start.

Mean per-agent return over 20 episodes (``evaluation.baselines.episode_scores``):

=========  ======  ========  ============  ==============  ====
level      random  momentum  buy_and_hold  mean_reversion  flat
=========  ======  ========  ============  ==============  ====
easy       -1.88   0.95      -0.35         -3.13           0
medium     -1.46   -0.23     -0.67         -1.94           0
hard       -1.48   -0.20     -0.99         -2.34           0
expert     -1.88   0.09      -1.75         -3.30           0
=========  ======  ========  ============  ==============  ====

(discrete: random -2.66 / -2.18 / -2.24 / -2.49, momentum 0.92 / -0.27 / -0.24 / 0.05.)
Random actions pay fees, slippage and herding; momentum profits where trends stand out
(easy) and stays near flat elsewhere. Knowing the drift's sign (every agent fully in it)
earns about +1.0 at easy and +0.1 at medium, and loses at hard and expert, where
herding and drawdowns eat the edge unless positions are sized and staggered.

Speed on the 2-core dev machine: about 12,000 env steps/s for the single-copy RLlib view
(below the platform's 20,000 target: a step is ~150 numpy calls on tiny arrays) and about
3,900,000 agent steps/s for the core at B=1024.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import gymnasium as gym
import numpy as np
from pydantic import Field, model_validator

from rl_platform.envs import metrics
from rl_platform.envs.base import (
    BatchedCore,
    CoreEnvConfig,
    CoreMultiAgentEnv,
    StepResult,
    clip,
)

# level -> (annualized volatility, number of background traders)
LEVELS = {"easy": (0.1, 2), "medium": (0.3, 5), "hard": (0.5, 10), "expert": (0.8, 20)}
STEPS_PER_YEAR = 252  # the volatility is annualized; one step is a trading day
DRIFT_STD = 0.002  # stationary std of the latent drift per step (fixed: more vol, less edge)
DRIFT_PERSISTENCE = 0.97  # regimes last ~30 steps, long enough for trends to pay
REVERSION = 0.01  # pull of the log price toward the fundamental (0), per step
SENTIMENT_NOISE = 1.0  # std of the sentiment's noise, in units of the drift's std
IMPACT = 0.0005  # price move per unit of net order flow
FEE = 0.0005  # transaction cost per unit of traded notional
NOISE_TRADER_SIZE = 0.5  # std of one noise trader's order, in units
MOMENTUM_TRADER_SIZE = 1.0  # largest order of one momentum trader, in units
MOMENTUM_SENSITIVITY = 5.0  # a momentum trader orders size * tanh(sensitivity * MACD obs)
LOG_PRICE_LIMIT = 3.0  # the price stays within [0.05, 20] x the start
STOP_RANGE = (0.01, 0.10)  # stop-loss width for actions -1 .. 1
TAKE_RANGE = (0.02, 0.20)  # take-profit width for actions -1 .. 1
HISTORY = 64  # returns kept per copy; the MACD's EMAs are truncated to it

RETURN_SCALE = 30.0  # observation scale of log returns and realized volatility
PRICE_SCALE = 10.0  # observation scale of log-price differences (MACD, gap to the mean)
PNL_SCALE = 10.0  # observation scale of PnL, VaR and drawdown (units of initial balance)
OBS_LIMIT = 10.0  # observations and the global state are clipped to +-this

PROFIT_SCALE = 10.0  # profit and fees: 1.0 of reward = 10% of the initial balance
SHARPE_SCALE = 0.1
COOPERATION_SCALE = 0.05
EXPLORATION_SCALE = 0.05
RISK_POSITION = 0.001
RISK_DRAWDOWN = 0.02
STATS_RATE = 0.05  # EMA rate of each agent's PnL mean and second moment
ACTION_MEAN_RATE = 0.1  # EMA rate of each agent's mean action (for exploration)
VAR_EPS = 1e-10  # keeps Sharpe ratios finite for agents that never traded
Z_95 = 1.645  # one-sided 95% quantile of the normal (parametric VaR)

# Discrete actions: (target position, stop action, take-profit action), the widest stop
# (10%) and take-profit (20%); index 2 is flat.
DISCRETE_ACTIONS = np.array(
    [[-1.0, 1.0, 1.0], [-0.5, 1.0, 1.0], [0.0, 1.0, 1.0], [0.5, 1.0, 1.0], [1.0, 1.0, 1.0]]
)

# Observation: the return window, then these market features, then the agent's own.
MARKET_FEATURES = (
    "macd", "signal", "trend", "gap", "rsi", "bollinger", "volume", "sentiment",
    "volatility", "log_price", "time_left",
)  # fmt: skip
AGENT_FEATURES = ("cash", "position", "unrealized", "equity", "var", "sharpe", "drawdown")
# In the global state only, after the market features.
HIDDEN_FEATURES = ("crowd_flow", "agent_flow", "drift")
STATE_AGENT_FEATURES = 4  # cash, position, unrealized PnL, equity of every agent

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


@dataclass(frozen=True)
class Strategy:
    """A parameterized trading rule over observed features (an option policy).

    ``signal = trend * t + sentiment * s - reversion * b - fundamental * p``, with t the
    window's trend over its volatility (a t-statistic), s the sentiment, b the Bollinger
    position and p the log price (the gap to the fundamental, which pulls the price back
    by 1% of it a step). The target position is ``clip(scale * signal, -max_position,
    max_position)``, 0 where ``|signal| < threshold``, times ``min(1, vol_target /
    volatility)`` (volatility in observation units, 30 x the per-step return: 0.3 is 1% a
    step), rounded to steps of 0.5 (fewer small, costly trades). ``stop`` and ``take``
    are the stop-loss and take-profit actions (-1 .. 1 -> 1% .. 10% and 2% .. 20%).
    """

    trend: float = 0.0
    sentiment: float = 0.0
    reversion: float = 0.0
    fundamental: float = 0.0
    scale: float = 1.0
    max_position: float = 1.0
    threshold: float = 0.0
    vol_target: float = float("inf")
    stop: float = 1.0
    take: float = 1.0


# The meta-controller's options (``hierarchy:``). Which pays depends on the state: trends
# pay where the volatility is low, reversion to the fundamental where it is high (see the
# module docstring's strategy table).
STRATEGIES = {
    # The trend's t-statistic at full size, never sized down, widest stops.
    "aggressive": Strategy(trend=1.0),
    # Half positions on strong trends only (|t| >= 2), volatility-sized, tight stop (3.3%)
    # and take-profit (6.5%).
    "conservative": Strategy(
        trend=0.5, max_position=0.5, threshold=1.0, vol_target=0.3, stop=-0.5, take=-0.5
    ),
    # Moderate risk: half-size trend following with a sentiment tilt, volatility-sized,
    # middle stops (5.5%) and take-profits (11%).
    "balanced": Strategy(
        trend=0.5, sentiment=0.25, max_position=0.5, vol_target=0.3, stop=0.0, take=0.0
    ),
    # Against the gap to the fundamental (the price's pull back), widest stops.
    "contrarian": Strategy(fundamental=1.0),
    # The trend's t-statistic / 2, volatility-sized (the ``momentum`` baseline's rule).
    "momentum": Strategy(trend=0.5, vol_target=0.3),
}


class TradingConfig(CoreEnvConfig):
    """Constructor arguments of the trading env."""

    num_agents: int = Field(default=5, ge=1, le=64)
    episode_length: int = Field(default=200, ge=1, le=100_000)
    window: int = Field(default=20, ge=5, le=HISTORY, description="Recent returns observed.")
    obs_dim: int = Field(default=50, ge=1, le=4096, description="Observation size (padded).")
    discrete: bool = Field(default=False, description="5 target positions instead of a Box.")
    task: Literal["easy", "medium", "hard", "expert"] = "easy"
    random_levels: list[Literal["easy", "medium", "hard", "expert"]] = Field(
        default_factory=list,
        description=(
            "Draw each episode's level uniformly from these at reset (one env copy per "
            "core only; overrides task and set_task); empty: the task level."
        ),
    )

    @model_validator(mode="after")
    def _room_for_features(self) -> TradingConfig:
        needed = observed_features(self.window)
        if self.obs_dim < needed:
            raise ValueError(
                f"obs_dim {self.obs_dim} is less than the {needed} features (window {self.window})"
            )
        return self


def observed_features(window: int) -> int:
    """Observation entries before the zero padding."""
    return window + len(MARKET_FEATURES) + len(AGENT_FEATURES)


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


class TradingCore(BatchedCore):
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
    baselines: ClassVar[tuple[str, ...]] = ("momentum", "buy_and_hold", "mean_reversion", "flat")
    state_fields: ClassVar[tuple[str, ...]] = ("_returns", "_market", "_book")
    potentials: ClassVar[tuple[str, ...]] = ("position_risk", "equity")
    strategies: ClassVar[tuple[str, ...]] = tuple(STRATEGIES)
    trace_fields: ClassVar[tuple[str, ...]] = (
        "price", "order_flow", "crowd_flow", "position", "pnl", "fee",
    )  # fmt: skip
    constraints: ClassVar[dict[str, str]] = {
        "max_position": (
            "|position held after the step| > limit, in units (1 = full: one initial balance "
            "at the start price); a stop or take-profit close leaves 0"
        ),
        "max_order": (
            "|position change the action asks for| > limit, in units; closes forced by a "
            "stop or take-profit are the env's and never count"
        ),
    }

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

    def trace(self) -> dict[str, np.ndarray]:
        """The last step's market and books, float64 (units of one initial balance).

        ``price`` (B,) after the step (1.0 at reset); ``order_flow`` (B,) the agents' net
        order and ``crowd_flow`` (B,) the background crowd's, in units; ``position``
        (B, N) after the step; ``pnl`` (B, N) the step's mark-to-market PnL after fees;
        ``fee`` (B, N) the fee paid.
        """
        m, row = self._m, self._row
        return {
            "price": m["price"][:, 0].copy(),
            "order_flow": m["agent_flow"][:, 0].copy(),
            "crowd_flow": m["crowd_flow"][:, 0].copy(),
            "position": row[POSITION].copy(),
            "pnl": row[PNL].copy(),
            "fee": row[FEE_PAID].copy(),
        }

    @classmethod
    def coordination(
        cls, trace: dict[str, np.ndarray], actions: np.ndarray, alive: np.ndarray
    ) -> dict[str, float]:
        """Market impact, herding and the share of the team's edge its own impact left.

        With ``F_t`` the agents' net order at step t (units) and ``p_{t-1}`` the price it
        traded from (the previous step's, 1.0 at the first step): every fill is raised by
        ``IMPACT * p_{t-1} * F_t`` per unit by the agents' own flow, so

        * ``market_impact``: mean over alive steps and copies of ``IMPACT * p_{t-1} *
          |F_t|``, the price move (in price units; the price starts at 1.0) the agents'
          aggregate order caused;
        * ``impact_cost``: per copy the episode's sum of ``IMPACT * p_{t-1} * F_t^2``, the
          slippage the team paid to its own net flow (units of one agent's initial
          balance, summed over agents), mean over copies;
        * ``herding``: Pearson correlation over time of two agents' position changes
          (from position 0 at reset), mean over pairs and copies
          (:func:`~rl_platform.envs.metrics.pairwise_correlation`), in [-1, 1];
          1 when all agents trade alike;
        * ``score``: ``1 - C / E`` clipped to [0, 1], with ``C`` the own-impact cost and
          ``E`` the team's edge (the episodes' PnL summed over agents, before fees and
          before the own-impact cost), both summed over all copies (a ratio of totals,
          so that one lucky or unlucky episode weighs by its size); 0 where ``E <= 0``
          (a team that never trades or has no edge has nothing that coordination could
          keep). 1: the agents kept their whole edge (their orders netted out or stayed
          small); 0: their own impact ate it. Over 64 episodes the ``momentum`` baseline
          (identical agents, herding 1) scores 0.80 / 0.60 / 0.31 / 0.84 at easy /
          medium / hard / expert (it hardly trades at expert), random teams 0 (no edge).
        """
        price, flow = trace["price"], trace["order_flow"]
        before = np.concatenate([np.ones_like(price[:1]), price[:-1]])
        push = IMPACT * before * flow  # per unit the agents' fills paid for their own flow
        cost = metrics.masked_sum(push * flow, alive)  # (B,)
        position = trace["position"]
        change = np.diff(position, axis=0, prepend=np.zeros_like(position[:1]))
        edge = metrics.masked_sum((trace["pnl"] + trace["fee"]).sum(-1), alive) + cost
        total_cost, total_edge = float(cost.sum()), float(edge.sum())
        return {
            "market_impact": metrics.masked_mean(np.abs(push), alive),
            "impact_cost": float(cost.mean()),
            "herding": metrics.pairwise_correlation(change, alive),
            "score": metrics.clip_unit(1.0 - total_cost / total_edge) if total_edge > 0 else 0.0,
        }

    def potential(self, name: str) -> np.ndarray:
        """Phi `name` of each agent in the current state, (B, N) float32.

        ``position_risk`` is about -0.06 for a full position at ``easy`` and -0.5 at
        ``expert`` (one step's PnL on it); ``equity`` changes each step by the step's
        profit after fees, the size of the ``profit`` reward.
        """
        row = self._row
        if name == "position_risk":
            step_volatility = self._m["volatility"] * (1.0 / RETURN_SCALE)  # (B, 1)
            exposure = np.abs(row[POSITION] * self._m["price"])
            return (exposure * step_volatility * -PROFIT_SCALE).astype(np.float32)
        if name == "equity":
            return ((row[EQUITY] - 1.0) * PROFIT_SCALE).astype(np.float32)
        return super().potential(name)

    def constraint_violations(self, name: str, limit: float, actions: np.ndarray) -> np.ndarray:
        """``max_position`` / ``max_order`` flags (B, N) for actions about to be applied.

        The target position is the action's (clipped to [-1, 1], or the discrete index's),
        and 0 where the stop or take-profit set with the current position has been
        crossed: the step then closes the position whatever the action.
        """
        if name not in self.constraints:
            return super().constraint_violations(name, limit, actions)
        if self._discrete:
            requested = DISCRETE_ACTIONS[np.asarray(actions, dtype=np.int64)][..., 0]
        else:
            requested = np.clip(np.asarray(actions, dtype=np.float64)[..., 0], -1.0, 1.0)
        row = self._row
        move = row[UNREALIZED] / (np.abs(row[COST]) + _TINY)  # as in step()
        kept_open = (move > row[STOP]) & (move < row[TAKE])
        if name == "max_position":
            return np.abs(np.where(kept_open, requested, 0.0)) > limit
        return kept_open & (np.abs(requested - row[POSITION]) > limit)

    def observed_violations(
        self, name: str, limit: float, obs: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """``max_position`` / ``max_order`` flags (B, N) from observations and actions.

        The agent observes its own position (``AGENT_FEATURES``) but not its stop and
        take-profit levels, so a close forced by one is not foreseen: the target
        position counts as held, which flags every action :meth:`constraint_violations`
        flags and, where a stop would have closed the position, possibly more.
        """
        if name not in self.constraints:
            return super().observed_violations(name, limit, obs, actions)
        if self._discrete:
            requested = DISCRETE_ACTIONS[np.asarray(actions, dtype=np.int64)][..., 0]
        else:
            requested = np.clip(np.asarray(actions, dtype=np.float64)[..., 0], -1.0, 1.0)
        if name == "max_position":
            return np.abs(requested) > limit
        position = obs[..., self._w + len(MARKET_FEATURES) + AGENT_FEATURES.index("position")]
        return np.abs(requested - position) > limit

    def default_action(self) -> np.ndarray:  # noqa: D102
        # Flat with middle stop and take-profit widths: "this agent stays out".
        return np.int64(2) if self.config.discrete else np.zeros(3, dtype=np.float32)

    def baseline_actions(self, name: str, obs: np.ndarray) -> np.ndarray:  # noqa: D102
        w = self._w
        feature = {key: obs[..., w + i] for i, key in enumerate(MARKET_FEATURES)}
        if name == "momentum":
            # The window's trend in units of its volatility (a t-statistic), sized down
            # when volatility is high.
            vol = np.maximum(feature["volatility"], 1e-3)
            t_stat = feature["trend"] * np.sqrt(w) / vol
            target = np.clip(t_stat / 2.0, -1.0, 1.0) * np.minimum(1.0, 0.3 / vol)
        elif name == "buy_and_hold":
            target = np.ones(obs.shape[:-1])
        elif name == "mean_reversion":
            target = -np.clip(feature["bollinger"], -1.0, 1.0)
        elif name == "flat":
            return self.default_actions(obs)
        else:
            raise ValueError(f"unknown baseline {name!r}; expected one of {self.baselines}")
        target = np.round(target * 2.0) / 2.0  # steps of 0.5: fewer small, costly trades
        if self.config.discrete:
            return (target * 2.0 + 2.0).astype(np.int64)
        actions = np.ones((*obs.shape[:-1], 3), dtype=np.float32)  # widest stops
        actions[..., 0] = target
        return actions

    def strategy_actions(self, name: str, obs: np.ndarray) -> np.ndarray:
        """Actions (B, N, *action_shape) of strategy `name` (``STRATEGIES``) for obs.

        With ``discrete: true`` the target maps to the nearest of the 5 positions (the
        discrete actions' stops are always the widest).
        """
        rule = STRATEGIES.get(name)
        if rule is None:
            return super().strategy_actions(name, obs)
        w = self._w
        feature = {key: obs[..., w + i] for i, key in enumerate(MARKET_FEATURES)}
        vol = np.maximum(feature["volatility"], 1e-3)
        t_stat = feature["trend"] * np.sqrt(w) / vol
        signal = (
            rule.trend * t_stat
            + rule.sentiment * feature["sentiment"]
            - rule.reversion * feature["bollinger"]
            - rule.fundamental * feature["log_price"]
        )
        target = np.clip(rule.scale * signal, -rule.max_position, rule.max_position)
        target = np.where(np.abs(signal) < rule.threshold, 0.0, target)
        target = target * np.minimum(1.0, rule.vol_target / vol)
        target = np.round(target * 2.0) / 2.0
        if self.config.discrete:
            return (target * 2.0 + 2.0).astype(np.int64)
        actions = np.empty((*obs.shape[:-1], 3), dtype=np.float32)
        actions[..., 0], actions[..., 1], actions[..., 2] = target, rule.stop, rule.take
        return actions


class TradingEnv(CoreMultiAgentEnv):
    """RLlib ``MultiAgentEnv`` of one trading market (PettingZoo: ``parallel_env``)."""

    core_cls = TradingCore
    config_model = TradingConfig


def parallel_env(**config: object):
    """PettingZoo ``ParallelEnv`` of the trading env."""
    return TradingEnv.parallel_env(**config)
