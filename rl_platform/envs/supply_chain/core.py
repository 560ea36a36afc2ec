"""The batched serial supply chain: B copies of a chain of N echelons."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

from rl_platform.envs.base import StepResult, clip, poisson
from rl_platform.envs.supply_chain.config import (
    BACKLOG,
    BACKLOG_COST,
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
    SupplyChainConfig,
)
from rl_platform.envs.supply_chain.rules import SupplyChainRules

_HOLDING_BACKLOG = np.array([HOLDING_COST, BACKLOG_COST], dtype=np.float32)


def _observation_matrix(n: int) -> np.ndarray:
    """(ROWS x n, n x 8): a copy's flat ledger -> its echelons' first 8 observation columns.

    Per echelon i: stock, backlog, in transit (slots 1..), arriving (slot 0), demand
    seen, forecast, then echelon i+1's stock and backlog (0 for the factory).
    """
    m = np.zeros((ROWS, n, n, 8), dtype=np.float32)
    for i in range(n):
        m[STOCK, i, i, 0] = m[BACKLOG, i, i, 1] = 1.0
        m[PIPE + 1 :, i, i, 2] = 1.0
        m[PIPE, i, i, 3] = 1.0
        m[SEEN, i, i, 4] = m[FORECAST, i, i, 5] = 1.0
        if i + 1 < n:
            m[STOCK, i + 1, i, 6] = m[BACKLOG, i + 1, i, 7] = 1.0
    return m.reshape(ROWS * n, n * 8)


class SupplyChainCore(SupplyChainRules):
    """B copies of the serial supply chain."""

    reward_components: ClassVar[tuple[str, ...]] = ("cost", "service_level", "turnover")
    default_reward_weights: ClassVar[dict[str, float]] = {
        "cost": 0.4,
        "service_level": 0.4,
        "turnover": 0.2,
    }
    state_fields: ClassVar[tuple[str, ...]] = ("_ledger", "_disruption", "_angle", "_t")

    def __init__(self, config: SupplyChainConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        b, n = batch_size, config.num_agents
        self._n = n
        self._mu = float(config.mean_demand)
        # Quantities are kept in units of mean demand (the dynamics are linear in it;
        # only customer demand is drawn in goods), in one ledger so that the observation
        # is one matrix product of it; the named attributes are views of its rows.
        self._ledger = np.zeros((b, ROWS, n), dtype=np.float32)
        self._stock = self._ledger[:, STOCK]
        self._backlog = self._ledger[:, BACKLOG]
        self._demand_seen = self._ledger[:, SEEN]
        self._forecast = self._ledger[:, FORECAST]
        self._pipeline = self._ledger[:, PIPE:]  # (copy, slot, echelon)
        # steps left of a supplier outage (column 0) and of a lead-time shock (column 1)
        self._disruption = np.zeros((b, 2), dtype=np.float32)
        self._outage, self._shock = self._disruption[:, 0], self._disruption[:, 1]
        self._angle = np.zeros(b, dtype=np.float64)  # of the seasonal cycle
        self._t = np.zeros(b, dtype=np.int64)
        self._rows = np.arange(b)
        self._inbound = np.zeros((b, n), dtype=np.float32)
        self._orders = np.zeros((b, n), dtype=np.float32)  # the last step's, for trace()
        # decoded action = clipped action x scale + offset: order, fast share, discount
        self._action_scale = np.array([MAX_ORDER / 2, 0.5, MAX_DISCOUNT / 2], np.float32)
        obs_dim = ONE_HOT + n
        self._obs = np.zeros((b, n, obs_dim), dtype=np.float32)
        self._obs[..., ONE_HOT:] = np.eye(n, dtype=np.float32)
        self._obs[..., 8:11] = SLOW_COST, FAST_COST, FAST_LEAD / MAX_LEAD
        self._observer = _observation_matrix(n)
        # per-copy columns = [outage, shock] flags @ this + offset, time left after
        self._copy_matrix = np.array([[0, 1, 0], [SHOCK_DELAY / MAX_LEAD, 0, 1]], np.float32)
        self._copy_offset = np.array([SLOW_LEAD / MAX_LEAD, 0, 0], np.float32)
        self._copy_columns = np.zeros((b, 4), dtype=np.float32)
        self.observation_space = gym.spaces.Box(0.0, CLIP, (obs_dim,), np.float32)
        self.state_space = gym.spaces.Box(0.0, CLIP, (n * (4 + MAX_LEAD) + 4,), np.float32)
        self.action_space = (
            gym.spaces.Discrete(len(DISCRETE_ORDERS))
            if config.discrete
            else gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        )
        self.action_names = (
            tuple(
                f"order {q:g} {'fast' if fast else 'slow'}" for q, fast in DISCRETE_ORDERS.tolist()
            )
            if config.discrete
            else ("order", "fast share", "discount")
        )

    @property
    def num_agents(self) -> int:  # noqa: D102
        return self._n

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:  # noqa: D102
        rows = self._rows if mask is None else np.flatnonzero(mask)
        # Start in a steady state: safety stock of two steps' demand, slow pipes full.
        self._ledger[rows] = 0.0
        self._ledger[rows, STOCK] = 2.0
        self._ledger[rows, PIPE : PIPE + SLOW_LEAD] = 1.0
        self._ledger[rows, SEEN] = 1.0
        self._ledger[rows, FORECAST] = 1.0
        self._disruption[rows] = 0
        self._angle[rows] = rng.uniform(0, 2 * np.pi, size=len(rows))
        self._t[rows] = 0

    def _slow_slot(self) -> np.ndarray:
        """(B,) pipeline slot of a slow shipment sent now (lead time - 1)."""
        return np.where(self._shock > 0, SLOW_LEAD + SHOCK_DELAY - 1, SLOW_LEAD - 1)

    def observe(self) -> np.ndarray:  # noqa: D102
        b, n = self.batch_size, self._n
        obs = self._obs
        obs[..., :8] = np.dot(self._ledger.reshape(b, -1), self._observer).reshape(b, n, 8)
        obs[:, -1, 6] = self.config.supplier_capacity * (self._outage == 0)
        columns = self._copy_columns
        columns[:, :3] = np.dot(np.sign(self._disruption), self._copy_matrix) + self._copy_offset
        columns[:, 3] = self._t * (-1.0 / self.config.episode_length) + 1.0
        obs[..., COPY_COLUMNS] = columns[:, None]
        return clip(obs, 0.0, CLIP)  # a new array: the views hand rows to RLlib

    def global_state(self) -> np.ndarray:  # noqa: D102
        b = self.batch_size
        parts = [
            self._ledger.reshape(b, -1),
            (self._outage > 0)[:, None],
            (self._shock > 0)[:, None],
            (self._angle % (2 * np.pi) / (2 * np.pi))[:, None],
            (1.0 - self._t / self.config.episode_length)[:, None],
        ]
        return np.clip(np.concatenate(parts, axis=-1), 0.0, CLIP).astype(np.float32)

    def _decode(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order, fast share, discount), each (B, N); orders in units of mean demand."""
        if self.config.discrete:
            table = DISCRETE_ORDERS[actions.astype(np.int64)]
            return table[..., 0], table[..., 1], np.zeros(actions.shape, np.float32)
        a = clip(actions, -1.0, 1.0) + 1.0
        a *= self._action_scale
        return a[..., 0], a[..., 1], a[..., 2]

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:  # noqa: D102
        # float32 throughout; at B=1 the cost is numpy call overhead, so ops are few.
        rate, complexity = LEVELS[self.get_task()]
        order, fast, discount = self._decode(actions)
        self._orders = order
        retail_discount = discount[:, 0]  # only the retailer sets prices
        stock, pipeline, demand = self._stock, self._pipeline, self._demand_seen

        # 1. arrivals
        stock += pipeline[:, 0]
        pipeline[:, :-1] = pipeline[:, 1:]
        pipeline[:, -1] = 0.0

        # 2. demand: customers at the retailer, orders from downstream elsewhere
        season = np.sin(self._angle) * (complexity / 100) + 1.0
        self._angle += 2 * np.pi / SEASON_PERIOD
        cv = 0.1 + complexity / 100
        mean = season * (self._mu + 2.0 * self._mu * retail_discount)
        noisy = mean * np.exp(rng.normal(-0.5 * cv * cv, cv, self.batch_size))
        demand[:, 0] = poisson(rng, noisy) / self._mu
        demand[:, 1:] = order[:, :-1]

        # 3. ship from stock what is owed
        owed = self._backlog + demand
        shipped = np.minimum(stock, owed)
        stock -= shipped
        np.subtract(owed, shipped, out=self._backlog)
        fill = (shipped + 1e-6) / (owed + 1e-6)  # 1 when nothing was owed

        # 4. transport downstream (echelon i ships to i-1); the factory's supply arrives
        inbound = self._inbound  # to echelon i
        inbound[:, :-1] = shipped[:, 1:]
        capacity = self.config.supplier_capacity * (self._outage == 0)
        np.minimum(order[:, -1], capacity, out=inbound[:, -1])
        by_fast = inbound * fast
        pipeline[:, FAST_LEAD - 1] += by_fast
        by_slow = inbound - by_fast
        if self._shock.any():  # a lead-time shock somewhere: per-copy slots
            pipeline[self._rows, self._slow_slot()] += by_slow
        else:
            pipeline[:, SLOW_LEAD - 1] += by_slow

        # costs (per unit of mean demand), service, turnover
        cost = np.dot(_HOLDING_BACKLOG, self._ledger[:, STOCK : BACKLOG + 1])
        cost += SLOW_COST * inbound
        cost += (FAST_COST - SLOW_COST) * by_fast
        cost[:, 0] += retail_discount * shipped[:, 0]
        cost *= -COST_SCALE
        turnover = shipped / (shipped + stock + 1e-6)
        components = {"cost": cost, "service_level": fill, "turnover": turnover}

        # bookkeeping and disruptions for the next step
        self._forecast += FORECAST_SMOOTHING * (demand - self._forecast)
        left = self._disruption
        np.maximum(left - 1.0, 0.0, out=left)
        left[rng.random(left.shape) < rate / 20] = DISRUPTION_STEPS
        held = self._ledger[:, STOCK : BACKLOG + 1]
        clip(held, 0.0, CLIP, out=held)
        self._t += 1
        return self.time_limit_result(components, self._t, self.config.episode_length)
