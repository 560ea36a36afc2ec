"""Supply chain: the echelons of a serial chain (the beer game, generalised) are agents.

Echelon 0 is the retailer, facing customer demand; echelon N-1 is the factory, ordering
from an outside supplier of limited capacity (default N = 4: retailer, wholesaler,
distributor, factory). Every step, in every copy:

1. shipments due arrive (one pipeline per echelon, ``MAX_LEAD`` slots);
2. the retailer sees customer demand: Poisson around a seasonal mean, raised by its
   price discount; echelon i > 0 sees the order echelon i-1 places this step;
3. each echelon ships what it can of its backlog plus new demand from stock; the rest
   stays as backlog (backorders);
4. what echelon i ships travels to echelon i-1 by the transport modes i-1 chose: a
   share by the fast mode (arrives next step, ``FAST_COST`` a unit) and the rest by the
   slow mode (``SLOW_LEAD`` steps plus any lead-time shock, ``SLOW_COST`` a unit); the
   factory's order is produced up to the supplier's capacity and sent the same way.

Disruptions: each step a supplier outage (capacity 0) and a lead-time shock (+3 steps
on the slow mode) each start with probability ``rate / 20`` and last ``DISRUPTION_STEPS``
steps, where ``rate`` is the level's disruption figure; so ``rate`` is about the chance
of a disruption in any 20-step window. The level's complexity sets demand noise and
seasonality: coefficient of variation ``0.1 + complexity / 100`` and seasonal amplitude
``complexity / 100`` (period 20 steps). The step reads the level, so ``switch_task``
applies the new disruption rate, demand noise and seasonality from the next step on
(disruptions already running run out).

=========  ==============  ==========
level      disruptions     complexity
=========  ==============  ==========
easy       0.1             5
medium     0.3             15
hard       0.5             30
expert     0.7             50
=========  ==============  ==========

Observation (15 + N), quantities in units of mean demand: on-hand inventory, backlog,
in-transit slow, in-transit arriving next step, demand seen last step, demand forecast
(exponential average), upstream availability (the upstream echelon's stock, or the
supplier's capacity for the factory), ordered but not yet shipped by the upstream
echelon (its backlog), the two transport costs, the two current lead times (fast, slow;
/ ``MAX_LEAD``), supplier outage (0/1), lead-time shock (0/1), time left, echelon
one-hot (N).

Action ``Box(-1, 1, (3,))`` (clipped): order quantity (0 .. 4 x mean demand), fast-mode
share (0 .. 1), price discount (0 .. 20%; the retailer's lever, ignored upstream: it
raises customer demand by twice the discount and costs the discount on every unit
sold). ``discrete: true``: ``Discrete(7)``, orders of 0, 0.5, 1, 1.5, 2 x mean demand by
the slow mode, and 1 or 2 x mean demand by the fast mode, no discount.

Reward components: ``cost`` (minus holding 0.5 + backlog 1.0 per unit and step, plus
transport and discounts, per unit of mean demand, x 0.1), ``service_level`` (fill rate
of what was owed this step, in [0, 1]) and ``turnover`` (shipped / (shipped + stock), in
[0, 1]). Default weights 0.4, 0.4, 0.2 (the seed's).

Strategies for a meta-controller (``hierarchy:``): ``lean``, ``standard`` and
``buffered`` order up to forecast x (lead time + 1) x 1.0, 1.5 and 2.0.

Baselines: ``base_stock`` (order up to forecast x (lead time + 1) x ``BASE_STOCK_FACTOR``
minus the inventory position, the factor tuned by :func:`tune_base_stock`), ``s_S``
(order up to forecast x (lead + 2) when the position falls below forecast x lead) and
``order_demand`` (pass the demand seen upstream: no amplification, each echelon's
orders vary like customer demand, but no safety stock either). Base stock with a
smoothed forecast is the textbook source of the bullwhip effect (Chen et al. 2000):
its orders vary more at every echelon up the chain (see :meth:`coordination`).

Constraints a shield can enforce (:mod:`rl_platform.safety`): ``max_order`` (the order
above the limit, x mean demand) and ``min_safety_stock`` (the inventory position after
ordering, the factory's order capped by the supplier's capacity, below the limit).

Potentials for reward shaping, per echelon: ``base_stock_gap``, minus the distance of
the inventory position (stock + in transit + ordered from upstream - backlog) from the
base-stock target (forecast x (lead time + 1) x ``BASE_STOCK_FACTOR``), in units of that
target at mean demand (6 units), and ``backlog``, minus the backlog as the cost
component charges it for a step (0.1 a unit of mean demand).
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
