"""The supply chain's task levels, constants, ledger layout and config model.

The env itself is described in :mod:`rl_platform.envs.supply_chain`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from rl_platform.envs.base import CoreEnvConfig

LEVELS = {"easy": (0.1, 5), "medium": (0.3, 15), "hard": (0.5, 30), "expert": (0.7, 50)}
MAX_LEAD = 8
SLOW_LEAD, FAST_LEAD, SHOCK_DELAY = 3, 1, 3
SLOW_COST, FAST_COST = 0.05, 0.3  # per unit of mean demand shipped
HOLDING_COST, BACKLOG_COST = 0.5, 1.0
COST_SCALE = 0.1
DISRUPTION_STEPS = 5
SEASON_PERIOD = 20
MAX_ORDER = 4.0  # x mean demand
MAX_DISCOUNT = 0.2
FORECAST_SMOOTHING = 0.2
# Found by tune_base_stock(SupplyChainConfig(task=level)) over factors 0.8 .. 2.0 (20
# episodes): 1.4 scored best at easy (33.8), 1.6 at medium, hard and expert (28.9, 22.1,
# 18.7); 1.5 sits between.
BASE_STOCK_FACTOR = 1.5
# Strategies a meta-controller chooses from (``hierarchy:``): order-up-to levels of
# forecast x (lead time + 1) x this factor (lean stock is cheap while demand is calm,
# buffers pay when it surges or supply is disrupted).
STRATEGY_FACTORS = {"lean": 1.0, "standard": BASE_STOCK_FACTOR, "buffered": 2.0}
# Discrete actions: (order x mean demand, fast share).
DISCRETE_ORDERS = np.array(
    [[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [1.5, 0.0], [2.0, 0.0], [1.0, 1.0], [2.0, 1.0]],
    dtype=np.float32,
)
CLIP = 50.0  # observations are clipped to [0, CLIP]
# Rows of the ledger, the (copy, row, echelon) array that holds every per-echelon quantity.
STOCK, BACKLOG, SEEN, FORECAST, PIPE = 0, 1, 2, 3, 4
ROWS = PIPE + MAX_LEAD
# Observation columns written per copy: slow lead, outage, shock, time left.
COPY_COLUMNS = slice(11, 15)
ONE_HOT = 15


class SupplyChainConfig(CoreEnvConfig):
    """Constructor arguments of the supply chain env."""

    num_agents: int = Field(default=4, ge=2, le=16, description="Echelons in the chain.")
    episode_length: int = Field(default=100, ge=1, le=100_000)
    mean_demand: float = Field(default=10.0, gt=0, description="Customer demand per step.")
    supplier_capacity: float = Field(
        default=2.0, gt=0, description="Factory supply per step, x mean demand."
    )
    discrete: bool = Field(default=False, description="7 discrete order choices.")
    task: Literal["easy", "medium", "hard", "expert"] = "easy"
