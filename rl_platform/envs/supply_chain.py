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
``complexity / 100`` (period 20 steps).

=========  ==============  ==========
level      disruptions     complexity
=========  ==============  ==========
easy       0.1             5
medium     0.3             15
hard       0.5             30
expert     0.7             50
=========  ==============  ==========

Observation (14 + N), quantities in units of mean demand: on-hand inventory, backlog,
in-transit slow, in-transit arriving next step, demand seen last step, demand forecast
(exponential average), upstream availability (the upstream echelon's stock, or the
supplier's capacity for the factory), the two transport costs, the two current lead
times (/ ``MAX_LEAD``), disruption in progress (0/1), time left, ordered but not yet
shipped by the upstream echelon (its backlog), echelon one-hot (N).

Action ``Box(-1, 1, (3,))`` (clipped): order quantity (0 .. 4 x mean demand), fast-mode
share (0 .. 1), price discount (0 .. 20%; the retailer's lever, ignored upstream: it
raises customer demand by twice the discount and costs the discount on every unit
sold). ``discrete: true``: ``Discrete(7)``, orders of 0, 0.5, 1, 1.5, 2 x mean demand by
the slow mode, and 1 or 2 x mean demand by the fast mode, no discount.

Reward components: ``cost`` (minus holding 0.5 + backlog 1.0 per unit and step, plus
transport and discounts, per unit of mean demand, x 0.1), ``service_level`` (fill rate
of what was owed this step, in [0, 1]) and ``turnover`` (shipped / (shipped + stock), in
[0, 1]). Default weights 0.4, 0.4, 0.2 (the seed's).

Baselines: ``base_stock`` (order up to forecast x (lead time + 1) x ``BASE_STOCK_FACTOR``
minus the inventory position, the factor tuned by :func:`tune_base_stock`), ``s_S``
(order up to forecast x (lead + 2) when the position falls below forecast x lead) and
``order_demand`` (pass the demand seen upstream: the policy behind the bullwhip effect).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import gymnasium as gym
import numpy as np
from pydantic import Field

from rl_platform.envs.base import BatchedCore, CoreEnvConfig, CoreMultiAgentEnv, StepResult

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
# Discrete actions: (order x mean demand, fast share).
DISCRETE_ORDERS = np.array(
    [[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [1.5, 0.0], [2.0, 0.0], [1.0, 1.0], [2.0, 1.0]],
    dtype=np.float32,
)
CLIP = 50.0  # observations are clipped to [0, CLIP]


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
    state_fields: ClassVar[tuple[str, ...]] = (
        "_stock", "_backlog", "_pipeline", "_demand_seen", "_forecast", "_outage",
        "_shock", "_phase", "_t",
    )  # fmt: skip

    def __init__(self, config: SupplyChainConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        b, n = batch_size, config.num_agents
        self._n = n
        self._mu = float(config.mean_demand)
        self._stock = np.zeros((b, n), dtype=np.float32)
        self._backlog = np.zeros((b, n), dtype=np.float32)
        self._pipeline = np.zeros((b, n, MAX_LEAD), dtype=np.float32)
        self._demand_seen = np.zeros((b, n), dtype=np.float32)
        self._forecast = np.zeros((b, n), dtype=np.float32)
        self._outage = np.zeros(b, dtype=np.int64)  # steps of supplier outage left
        self._shock = np.zeros(b, dtype=np.int64)  # steps of lead-time shock left
        self._phase = np.zeros(b, dtype=np.float32)
        self._t = np.zeros(b, dtype=np.int64)
        self._rows = np.arange(b)
        obs_dim = 14 + n
        self._obs = np.zeros((b, n, obs_dim), dtype=np.float32)
        self._obs[..., 14:] = np.eye(n, dtype=np.float32)
        self._obs[..., 7] = SLOW_COST
        self._obs[..., 8] = FAST_COST
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
        mu = self._mu
        # Start in a steady state: safety stock of two steps' demand, slow pipes full.
        self._stock[rows] = 2.0 * mu
        self._backlog[rows] = 0.0
        self._pipeline[rows] = 0.0
        self._pipeline[rows, :, :SLOW_LEAD] = mu
        self._demand_seen[rows] = mu
        self._forecast[rows] = mu
        self._outage[rows] = 0
        self._shock[rows] = 0
        self._phase[rows] = rng.uniform(0, 2 * np.pi, size=len(rows))
        self._t[rows] = 0

    def _slow_lead(self) -> np.ndarray:
        return SLOW_LEAD + SHOCK_DELAY * (self._shock > 0)

    def observe(self) -> np.ndarray:  # noqa: D102
        mu, obs = self._mu, self._obs
        obs[..., 0] = self._stock / mu
        obs[..., 1] = self._backlog / mu
        obs[..., 2] = self._pipeline[..., 1:].sum(-1) / mu
        obs[..., 3] = self._pipeline[..., 0] / mu
        obs[..., 4] = self._demand_seen / mu
        obs[..., 5] = self._forecast / mu
        capacity = self.config.supplier_capacity * (self._outage == 0)
        obs[..., :-1, 6] = self._stock[:, 1:] / mu
        obs[..., -1, 6] = capacity
        obs[..., 9] = (self._slow_lead() / MAX_LEAD)[:, None]
        obs[..., 10] = FAST_LEAD / MAX_LEAD
        obs[..., 11] = ((self._outage > 0) | (self._shock > 0))[:, None]
        obs[..., 12] = (1.0 - self._t / self.config.episode_length)[:, None]
        obs[..., :-1, 13] = self._backlog[:, 1:] / mu  # ordered, not yet shipped upstream
        return np.clip(obs, 0.0, CLIP)  # a new array: the views hand rows to RLlib

    def global_state(self) -> np.ndarray:  # noqa: D102
        b, mu = self.batch_size, self._mu
        parts = [
            self._stock / mu,
            self._backlog / mu,
            self._demand_seen / mu,
            self._forecast / mu,
            self._pipeline.reshape(b, -1) / mu,
            (self._outage > 0)[:, None],
            (self._shock > 0)[:, None],
            (self._phase / (2 * np.pi))[:, None],
            (1.0 - self._t / self.config.episode_length)[:, None],
        ]
        return np.clip(np.concatenate(parts, axis=-1), 0.0, CLIP).astype(np.float32)

    def _decode(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order units, fast share, discount), each (B, N)."""
        if self.config.discrete:
            table = DISCRETE_ORDERS[actions.astype(np.int64)]
            return table[..., 0] * self._mu, table[..., 1], np.zeros(actions.shape, np.float32)
        a = (np.clip(actions, -1.0, 1.0) + 1.0) * 0.5
        return a[..., 0] * MAX_ORDER * self._mu, a[..., 1], a[..., 2] * MAX_DISCOUNT

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:  # noqa: D102
        mu, b = self._mu, self.batch_size
        rate, complexity = LEVELS[self.get_task()]
        order, fast, discount = self._decode(actions)
        discount[:, 1:] = 0.0  # only the retailer sets prices

        # 1. arrivals
        self._stock += self._pipeline[..., 0]
        self._pipeline[..., :-1] = self._pipeline[..., 1:]
        self._pipeline[..., -1] = 0.0

        # 2. demand: customers at the retailer, orders from downstream elsewhere
        season = 1.0 + complexity / 100 * np.sin(2 * np.pi * self._t / SEASON_PERIOD + self._phase)
        cv = 0.1 + complexity / 100
        mean = mu * season * (1.0 + 2.0 * discount[:, 0])
        noisy = mean * np.exp(cv * rng.standard_normal(b) - 0.5 * cv * cv)
        customers = rng.poisson(np.maximum(noisy, 0.0)).astype(np.float32)
        demand = np.concatenate([customers[:, None], order[:, :-1]], axis=1)

        # 3. ship from stock what is owed
        owed = self._backlog + demand
        shipped = np.minimum(self._stock, owed)
        self._stock -= shipped
        self._backlog = owed - shipped
        fill = np.where(owed > 0, shipped / np.maximum(owed, 1e-6), 1.0)

        # 4. transport downstream (echelon i ships to i-1); the factory's supply arrives
        capacity = self.config.supplier_capacity * mu * (self._outage == 0)
        produced = np.minimum(order[:, -1], capacity)
        inbound = np.concatenate([shipped[:, 1:], produced[:, None]], axis=1)  # to echelon i
        by_fast = inbound * fast
        by_slow = inbound - by_fast
        self._pipeline[:, :, FAST_LEAD - 1] += by_fast
        slot = np.minimum(self._slow_lead(), MAX_LEAD) - 1
        self._pipeline[self._rows, :, slot] += by_slow

        # costs, service, turnover
        cost = (
            HOLDING_COST * self._stock
            + BACKLOG_COST * self._backlog
            + SLOW_COST * by_slow
            + FAST_COST * by_fast
        )
        cost[:, 0] += discount[:, 0] * shipped[:, 0]
        turnover = shipped / (shipped + self._stock + 1e-6)
        components = {
            "cost": (-COST_SCALE * cost / mu).astype(np.float32),
            "service_level": fill.astype(np.float32),
            "turnover": turnover.astype(np.float32),
        }

        # bookkeeping and disruptions for the next step
        self._demand_seen = demand
        self._forecast += FORECAST_SMOOTHING * (demand - self._forecast)
        self._outage = np.maximum(self._outage - 1, 0)
        self._shock = np.maximum(self._shock - 1, 0)
        starts = rng.random((2, b)) < rate / 20
        self._outage[starts[0]] = DISRUPTION_STEPS
        self._shock[starts[1]] = DISRUPTION_STEPS
        np.clip(self._backlog, 0.0, CLIP * mu, out=self._backlog)
        np.clip(self._stock, 0.0, CLIP * mu, out=self._stock)
        self._t += 1
        return self.time_limit_result(components, self._t, self.config.episode_length)

    def default_action(self) -> np.ndarray:  # noqa: D102
        # Order the mean demand by the slow mode, no discount: a neutral echelon.
        if self.config.discrete:
            return np.int64(2)
        return np.array([2.0 / MAX_ORDER - 1.0, -1.0, -1.0], dtype=np.float32)

    def baseline_actions(self, name: str, obs: np.ndarray) -> np.ndarray:  # noqa: D102
        return self._orders_to_actions(self.baseline_orders(name, obs))

    def baseline_orders(
        self, name: str, obs: np.ndarray, factor: float = BASE_STOCK_FACTOR
    ) -> np.ndarray:
        """Order quantities (x mean demand) of a baseline, from observations."""
        stock, backlog, slow, arriving, seen, forecast = (obs[..., k] for k in range(6))
        lead = obs[..., 9] * MAX_LEAD
        position = stock + slow + arriving + obs[..., 13] - backlog
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
