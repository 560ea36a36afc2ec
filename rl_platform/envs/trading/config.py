"""Trading's task levels, market constants, observation layout and config model.

The env itself is described in :mod:`rl_platform.envs.trading`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from rl_platform.envs.base import CoreEnvConfig

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
# By target position: sell to a full short .. flat .. buy to a full long.
DISCRETE_ACTION_NAMES = ("short", "half short", "flat", "half long", "long")

# Observation: the return window, then these market features, then the agent's own.
MARKET_FEATURES = (
    "macd", "signal", "trend", "gap", "rsi", "bollinger", "volume", "sentiment",
    "volatility", "log_price", "time_left",
)  # fmt: skip
AGENT_FEATURES = ("cash", "position", "unrealized", "equity", "var", "sharpe", "drawdown")
# In the global state only, after the market features.
HIDDEN_FEATURES = ("crowd_flow", "agent_flow", "drift")
STATE_AGENT_FEATURES = 4  # cash, position, unrealized PnL, equity of every agent


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
