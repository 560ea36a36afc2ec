"""Supply chain: the echelons of a serial chain (the beer game, generalised) are agents.

:class:`SupplyChainCore` (the batched core, in :mod:`rl_platform.envs.supply_chain.core`)
and its RLlib view :class:`SupplyChainEnv`; :func:`tune_base_stock` tunes the
``base_stock`` baseline. The step, disruptions, levels, observations, actions, rewards,
strategies, baselines (and the bullwhip effect, Chen et al. 2000), constraints and
potentials: docs/environments.md ("supply_chain").
"""

from __future__ import annotations

import numpy as np

from rl_platform.envs.base import CoreMultiAgentEnv
from rl_platform.envs.supply_chain.config import (
    BACKLOG,
    BACKLOG_COST,
    BASE_STOCK_FACTOR,
    CLIP,
    COPY_COLUMNS,
    COST_SCALE,
    DISCRETE_ORDERS,
    DISRUPTION_STEPS,
    FAST_COST,
    FAST_LEAD,
    FORECAST,
    FORECAST_SMOOTHING,
    HOLDING_COST,
    LEVELS,
    MAX_DISCOUNT,
    MAX_LEAD,
    MAX_ORDER,
    ONE_HOT,
    PIPE,
    ROWS,
    SEASON_PERIOD,
    SEEN,
    SHOCK_DELAY,
    SLOW_COST,
    SLOW_LEAD,
    STOCK,
    STRATEGY_FACTORS,
    SupplyChainConfig,
)
from rl_platform.envs.supply_chain.core import SupplyChainCore
from rl_platform.envs.supply_chain.rules import SupplyChainRules


class SupplyChainEnv(CoreMultiAgentEnv):
    """RLlib ``MultiAgentEnv`` of one chain (PettingZoo: ``parallel_env``)."""

    core_cls = SupplyChainCore
    config_model = SupplyChainConfig


def parallel_env(**config: object):
    """PettingZoo ``ParallelEnv`` of the supply chain env."""
    return SupplyChainEnv.parallel_env(**config)


def tune_base_stock(
    config: SupplyChainConfig | None = None,
    factors: tuple[float, ...] = (0.6, 0.8, 1.0, 1.2, 1.4, 1.6),
    episodes: int = 20,
    seed: int = 0,
) -> dict[float, float]:
    """Mean per-agent episode return of the base-stock policy for each safety factor."""
    config = config or SupplyChainConfig()
    scores = {}
    for factor in factors:
        core = SupplyChainCore(config, episodes)

        def act(obs: np.ndarray, core=core, factor=factor) -> np.ndarray:
            return core._orders_to_actions(core.baseline_orders("base_stock", obs, factor))

        scores[factor] = float(core.play_episodes(act, np.random.default_rng(seed)).mean())
    return scores


__all__ = [
    "BACKLOG",
    "BACKLOG_COST",
    "BASE_STOCK_FACTOR",
    "CLIP",
    "COPY_COLUMNS",
    "COST_SCALE",
    "DISCRETE_ORDERS",
    "DISRUPTION_STEPS",
    "FAST_COST",
    "FAST_LEAD",
    "FORECAST",
    "FORECAST_SMOOTHING",
    "HOLDING_COST",
    "LEVELS",
    "MAX_DISCOUNT",
    "MAX_LEAD",
    "MAX_ORDER",
    "ONE_HOT",
    "PIPE",
    "ROWS",
    "SEASON_PERIOD",
    "SEEN",
    "SHOCK_DELAY",
    "SLOW_COST",
    "SLOW_LEAD",
    "STOCK",
    "STRATEGY_FACTORS",
    "SupplyChainConfig",
    "SupplyChainCore",
    "SupplyChainEnv",
    "SupplyChainRules",
    "parallel_env",
    "tune_base_stock",
]
