"""What the trading core offers beyond its dynamics.

Baselines, the meta-controller's strategies (``STRATEGIES``), safety constraints,
shaping potentials, the step trace and the coordination metrics over it;
:class:`~rl_platform.envs.trading.core.TradingCore` inherits them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rl_platform.envs import metrics
from rl_platform.envs.base import BatchedCore
from rl_platform.envs.trading.config import (
    AGENT_FEATURES,
    DISCRETE_ACTIONS,
    IMPACT,
    MARKET_FEATURES,
    PROFIT_SCALE,
    RETURN_SCALE,
)
from rl_platform.envs.trading.layout import (
    _TINY,
    COST,
    EQUITY,
    FEE_PAID,
    PNL,
    POSITION,
    STOP,
    TAKE,
    UNREALIZED,
)


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
# package docstring's strategy table).
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


class TradingRules(BatchedCore):
    """Baselines, strategies, constraints, potentials and coordination of the trading core.

    Reads the state that :class:`~rl_platform.envs.trading.core.TradingCore` keeps.
    """

    baselines: ClassVar[tuple[str, ...]] = ("momentum", "buy_and_hold", "mean_reversion", "flat")
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
