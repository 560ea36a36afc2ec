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

from typing import ClassVar, Literal

import gymnasium as gym
import numpy as np
from pydantic import Field

from rl_platform.envs import metrics
from rl_platform.envs.base import (
    BatchedCore,
    CoreEnvConfig,
    CoreMultiAgentEnv,
    StepResult,
    clip,
    poisson,
)

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


class SupplyChainCore(BatchedCore):
    """B copies of the serial supply chain."""

    reward_components: ClassVar[tuple[str, ...]] = ("cost", "service_level", "turnover")
    default_reward_weights: ClassVar[dict[str, float]] = {
        "cost": 0.4,
        "service_level": 0.4,
        "turnover": 0.2,
    }
    baselines: ClassVar[tuple[str, ...]] = ("base_stock", "s_S", "order_demand")
    strategies: ClassVar[tuple[str, ...]] = tuple(STRATEGY_FACTORS)
    state_fields: ClassVar[tuple[str, ...]] = ("_ledger", "_disruption", "_angle", "_t")
    potentials: ClassVar[tuple[str, ...]] = ("base_stock_gap", "backlog")
    trace_fields: ClassVar[tuple[str, ...]] = (
        "demand", "orders", "inventory", "backlog", "in_transit",
    )  # fmt: skip
    constraints: ClassVar[dict[str, str]] = {
        "max_order": "order placed upstream > limit, in units of mean demand (0 .. 4)",
        "min_safety_stock": (
            "inventory position after ordering < limit, in units of mean demand: stock + in "
            "transit + ordered and not yet shipped - backlog + this order (the factory's "
            "capped by the supplier's capacity, 0 in an outage)"
        ),
    }

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

    def trace(self) -> dict[str, np.ndarray]:
        """The last step's flows and stocks, float64, in units of mean demand.

        ``demand`` (B,) the customer demand the retailer saw; ``orders`` (B, N) what each
        echelon ordered from upstream (the factory from its supplier); ``inventory``,
        ``backlog`` and ``in_transit`` (B, N) each echelon's stock on hand, unfilled
        orders and goods on the way to it, after the step.
        """
        return {
            "demand": self._demand_seen[:, 0].astype(np.float64),
            "orders": self._orders.astype(np.float64),
            "inventory": self._stock.astype(np.float64),
            "backlog": self._backlog.astype(np.float64),
            "in_transit": self._pipeline.sum(axis=1, dtype=np.float64),
        }

    @classmethod
    def coordination(
        cls, trace: dict[str, np.ndarray], actions: np.ndarray, alive: np.ndarray
    ) -> dict[str, float]:
        """Bullwhip effect and service level of the chain.

        * ``bullwhip_echelon_<i>``: per echelon i, ``Var_t(orders_i) / Var_t(demand)``
          over each copy's alive steps (customer demand, population variances;
          :func:`~rl_platform.envs.metrics.bullwhip_ratio`), mean over copies: 1
          when the echelon's orders vary as much as customer demand, above 1 when it
          amplifies the variation (the bullwhip effect);
        * ``bullwhip_ratio``: the mean of those over echelons; ``bullwhip_max``: their
          largest (usually the factory's);
        * ``service_level``: the retailer's fill rate, ``sum_t met_t / sum_t demand_t``
          per copy, mean over copies, where ``met_t = demand_t - min(backlog_t,
          demand_t)`` is the part of step t's customer demand shipped from stock that
          step (shipments serve the backlog first, so whatever backlog is left after the
          step is the newest demand); 1.0 for a copy without demand;
        * ``score``: ``(service_level + min(1, 1 / bullwhip_ratio)) / 2``: 1 when every
          customer is served on time and orders vary no more than demand.
        """
        demand = trace["demand"]
        ratios = metrics.bullwhip_ratio(trace["orders"], demand, alive).mean(axis=0)  # (N,)
        met = demand - np.minimum(trace["backlog"][..., 0], demand)
        service = float(np.mean(metrics.fill_rate(demand, met, alive)))
        bullwhip = float(ratios.mean())
        smooth = 1.0 if bullwhip <= 1.0 else 1.0 / bullwhip
        figures = {f"bullwhip_echelon_{i}": float(r) for i, r in enumerate(ratios)}
        return {
            **figures,
            "bullwhip_ratio": bullwhip,
            "bullwhip_max": float(ratios.max()),
            "service_level": service,
            "score": metrics.clip_unit((service + smooth) / 2.0),
        }

    def potential(self, name: str) -> np.ndarray:
        """Phi `name` of each echelon in the current state, (B, N) float32; 0 is best.

        ``base_stock_gap`` is -1 a whole target (at mean demand) off: under the
        base-stock policy at ``easy`` about -0.2 at the retailer (a step's demand
        short) and down to -0.9 at the factory (orders swing upstream, supply is
        capped), under random orders about -6. ``backlog`` is what a step of the current
        backlog costs in the ``cost`` component (before its weight).
        """
        if name == "backlog":
            return self._backlog * np.float32(-COST_SCALE * BACKLOG_COST)
        if name != "base_stock_gap":
            return super().potential(name)
        backlog = self._backlog
        position = self._stock + self._pipeline.sum(axis=1) - backlog
        position[:, :-1] += backlog[:, 1:]  # ordered from upstream, not yet shipped
        lead = (self._slow_slot() + 2).astype(np.float32)[:, None]  # lead time + 1
        target = self._forecast * lead * np.float32(BASE_STOCK_FACTOR)
        scale = np.float32(-1.0 / (BASE_STOCK_FACTOR * (SLOW_LEAD + 1)))
        return np.abs(position - target) * scale

    def constraint_violations(self, name: str, limit: float, actions: np.ndarray) -> np.ndarray:
        """``max_order`` / ``min_safety_stock`` flags (B, N) for actions about to be applied."""
        if name not in self.constraints:
            return super().constraint_violations(name, limit, actions)
        order = self._decode(np.asarray(actions))[0]  # new arrays: no state is touched
        if name == "max_order":
            return order > limit
        backlog = self._backlog
        position = self._stock + self._pipeline.sum(axis=1) - backlog
        position[:, :-1] += backlog[:, 1:]  # ordered from upstream, not yet shipped
        capacity = self.config.supplier_capacity * (self._outage == 0)
        position[:, :-1] += order[:, :-1]
        position[:, -1] += np.minimum(order[:, -1], capacity)
        return position < limit

    def observed_violations(
        self, name: str, limit: float, obs: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """``max_order`` / ``min_safety_stock`` flags (B, N) from observations and actions.

        ``max_order`` needs the action only. ``min_safety_stock`` reads the inventory
        position from the observation (stock + in transit + arriving + ordered and not
        yet shipped upstream - backlog), and the factory's (the last agent's) supply cap
        from its upstream availability (the supplier's capacity, 0 in an outage): the
        env's own flags. Observations are clipped at ``CLIP``, which can only understate
        what is in transit, so a clipped observation errs on the safe side.
        """
        if name not in self.constraints:
            return super().observed_violations(name, limit, obs, actions)
        order = self._decode(np.asarray(actions))[0]  # reads the config only
        if name == "max_order":
            return order > limit
        obs = np.asarray(obs, dtype=np.float32)
        stock, backlog, slow, arriving = (obs[..., k] for k in range(4))
        position = stock + slow + arriving - backlog + obs[..., 7]  # 7: upstream backlog
        position[..., :-1] += order[..., :-1]
        position[..., -1] += np.minimum(order[..., -1], obs[..., -1, 6])  # 6: availability
        return position < limit

    def default_action(self) -> np.ndarray:  # noqa: D102
        # Order the mean demand by the slow mode, no discount: a neutral echelon.
        if self.config.discrete:
            return np.int64(2)
        return np.array([2.0 / MAX_ORDER - 1.0, -1.0, -1.0], dtype=np.float32)

    def baseline_actions(self, name: str, obs: np.ndarray) -> np.ndarray:  # noqa: D102
        return self._orders_to_actions(self.baseline_orders(name, obs))

    def strategy_actions(self, name: str, obs: np.ndarray) -> np.ndarray:
        """Orders up to ``STRATEGY_FACTORS[name]`` x forecast x (lead time + 1), slow mode."""
        factor = STRATEGY_FACTORS.get(name)
        if factor is None:
            return super().strategy_actions(name, obs)
        return self._orders_to_actions(self.baseline_orders("base_stock", obs, factor))

    def baseline_orders(
        self, name: str, obs: np.ndarray, factor: float = BASE_STOCK_FACTOR
    ) -> np.ndarray:
        """Order quantities (x mean demand) of a baseline, from observations."""
        stock, backlog, slow, arriving, seen, forecast = (obs[..., k] for k in range(6))
        lead = obs[..., 11] * MAX_LEAD
        position = stock + slow + arriving + obs[..., 7] - backlog
        if name == "base_stock":
            return np.maximum(forecast * (lead + 1) * factor - position, 0.0)
        if name == "s_S":
            low = position < forecast * lead
            return np.where(low, np.maximum(forecast * (lead + 2) - position, 0.0), 0.0)
        if name == "order_demand":
            return seen
        raise ValueError(f"unknown baseline {name!r}; expected one of {self.baselines}")

    def _orders_to_actions(self, orders: np.ndarray) -> np.ndarray:
        if self.config.discrete:
            slow = DISCRETE_ORDERS[:5, 0]
            return np.abs(orders[..., None] - slow).argmin(-1).astype(np.int64)
        actions = np.full((*orders.shape, 3), -1.0, dtype=np.float32)
        actions[..., 0] = np.clip(orders / MAX_ORDER * 2.0 - 1.0, -1.0, 1.0)
        return actions


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
