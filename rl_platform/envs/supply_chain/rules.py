"""What the supply chain core offers beyond its dynamics.

Baselines, the meta-controller's order-up-to strategies (``STRATEGY_FACTORS``), safety
constraints, shaping potentials, the step trace and the coordination metrics over it;
:class:`~rl_platform.envs.supply_chain.core.SupplyChainCore` inherits them.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from rl_platform.envs import metrics
from rl_platform.envs.base import BatchedCore
from rl_platform.envs.supply_chain.config import (
    BACKLOG_COST,
    BASE_STOCK_FACTOR,
    COST_SCALE,
    DISCRETE_ORDERS,
    MAX_LEAD,
    MAX_ORDER,
    SLOW_LEAD,
    STRATEGY_FACTORS,
)


class SupplyChainRules(BatchedCore):
    """Baselines, strategies, constraints, potentials and coordination of the chain.

    Reads the ledger that :class:`~rl_platform.envs.supply_chain.core.SupplyChainCore`
    keeps and uses its ``_decode`` and ``_slow_slot``.
    """

    baselines: ClassVar[tuple[str, ...]] = ("base_stock", "s_S", "order_demand")
    strategies: ClassVar[tuple[str, ...]] = tuple(STRATEGY_FACTORS)
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
