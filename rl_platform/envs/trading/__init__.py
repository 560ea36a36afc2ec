"""Trading: N agents trade one synthetic asset in a shared market with price impact.

:class:`TradingCore` (the batched core, in :mod:`rl_platform.envs.trading.core`) and its
RLlib view :class:`TradingEnv`; ``STRATEGIES`` (each a :class:`Strategy`) for a
meta-controller. The market, levels, observations, actions, rewards, baselines,
strategies, constraints, potentials, scores and speed: docs/environments.md ("trading").
"""

from __future__ import annotations

from rl_platform.envs.base import CoreMultiAgentEnv
from rl_platform.envs.trading.config import (
    ACTION_MEAN_RATE,
    AGENT_FEATURES,
    COOPERATION_SCALE,
    DISCRETE_ACTIONS,
    DRIFT_PERSISTENCE,
    DRIFT_STD,
    EXPLORATION_SCALE,
    FEE,
    HIDDEN_FEATURES,
    HISTORY,
    IMPACT,
    LEVELS,
    LOG_PRICE_LIMIT,
    MARKET_FEATURES,
    MOMENTUM_SENSITIVITY,
    MOMENTUM_TRADER_SIZE,
    NOISE_TRADER_SIZE,
    OBS_LIMIT,
    PNL_SCALE,
    PRICE_SCALE,
    PROFIT_SCALE,
    RETURN_SCALE,
    REVERSION,
    RISK_DRAWDOWN,
    RISK_POSITION,
    SENTIMENT_NOISE,
    SHARPE_SCALE,
    STATE_AGENT_FEATURES,
    STATS_RATE,
    STEPS_PER_YEAR,
    STOP_RANGE,
    TAKE_RANGE,
    VAR_EPS,
    Z_95,
    TradingConfig,
    observed_features,
)
from rl_platform.envs.trading.core import TradingCore
from rl_platform.envs.trading.layout import (
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
)
from rl_platform.envs.trading.rules import STRATEGIES, Strategy, TradingRules


class TradingEnv(CoreMultiAgentEnv):
    """RLlib ``MultiAgentEnv`` of one trading market (PettingZoo: ``parallel_env``)."""

    core_cls = TradingCore
    config_model = TradingConfig


def parallel_env(**config: object):
    """PettingZoo ``ParallelEnv`` of the trading env."""
    return TradingEnv.parallel_env(**config)


__all__ = [
    "ACTION_MEAN_RATE",
    "AGENT_FEATURES",
    "BOOK_ROWS",
    "CASH",
    "COOPERATION_SCALE",
    "COST",
    "DEVIATION",
    "DISCRETE_ACTIONS",
    "DRAWDOWN",
    "DRIFT_PERSISTENCE",
    "DRIFT_STD",
    "EQUITY",
    "EXPLORATION_SCALE",
    "FEE",
    "FEE_PAID",
    "FLOW",
    "HIDDEN_FEATURES",
    "HISTORY",
    "IMPACT",
    "LEVELS",
    "LOG_PRICE_LIMIT",
    "MARKET_FEATURES",
    "MEAN_ACTION",
    "MOMENTUM_SENSITIVITY",
    "MOMENTUM_TRADER_SIZE",
    "NOISE_TRADER_SIZE",
    "OBS_LIMIT",
    "PEAK",
    "PNL",
    "PNL_MEAN",
    "PNL_SCALE",
    "PNL_SQUARE",
    "PNL_STD",
    "POSITION",
    "POSITION_SQUARED",
    "PRICE_SCALE",
    "PROFIT_SCALE",
    "RETURN_SCALE",
    "REVERSION",
    "RISK_DRAWDOWN",
    "RISK_POSITION",
    "SENTIMENT_NOISE",
    "SHARPE",
    "SHARPE_SCALE",
    "SHARPE_STEP",
    "STATE_AGENT_FEATURES",
    "STATS_RATE",
    "STEPS_PER_YEAR",
    "STOP",
    "STOP_RANGE",
    "STRATEGIES",
    "Strategy",
    "TAKE",
    "TAKE_RANGE",
    "TradingConfig",
    "TradingCore",
    "TradingEnv",
    "TradingRules",
    "UNREALIZED",
    "VAR_EPS",
    "Z_95",
    "observed_features",
    "parallel_env",
]
