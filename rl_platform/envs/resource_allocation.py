"""Resource allocation: N agents with changing needs share R limited resources.

Requests are granted, or rationed in proportion when a resource is over-subscribed:
:class:`ResourceAllocationCore` (the batched core) and its RLlib view
:class:`ResourceAllocationEnv`. The dynamics, levels, observations, actions, rewards,
baselines, strategies, constraint and potentials: docs/environments.md
("resource_allocation").
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
)
from rl_platform.envs.metrics import gini

# level -> (scarcity, need noise, capacity volatility, burst probability)
LEVELS = {
    "easy": (0.6, 0.05, 0.0, 0.0),
    "medium": (0.9, 0.10, 0.05, 0.0),
    "hard": (1.2, 0.20, 0.10, 0.0),
    "expert": (1.6, 0.30, 0.20, 0.05),
}
DISCRETE_REQUESTS = np.array([0.0, 0.5, 1.0, 1.5, 2.0], dtype=np.float32)  # x own needs
# Strategies a meta-controller chooses from (``hierarchy:``): request this multiple of
# one's own needs (padding wins a larger share of an over-subscribed resource, at the
# price of fairness and waste when it is not).
STRATEGY_MULTIPLES = {"modest": 0.5, "exact": 1.0, "padded": 1.5, "greedy": 2.0}
NEED_PERSISTENCE = 0.9  # AR(1) coefficient of needs around their means
EPS = 1e-6


class ResourceAllocationConfig(CoreEnvConfig):
    """Constructor arguments of the resource allocation env."""

    num_agents: int = Field(default=4, ge=2, le=64)
    num_resources: int = Field(default=3, ge=1, le=32)
    episode_length: int = Field(default=50, ge=1, le=100_000)
    discrete: bool = Field(default=False, description="5 need-proportional requests.")
    task: Literal["easy", "medium", "hard", "expert"] = "easy"


class ResourceAllocationCore(BatchedCore):
    """B copies of the resource allocation dynamics."""

    reward_components: ClassVar[tuple[str, ...]] = ("satisfaction", "fairness", "waste")
    default_reward_weights: ClassVar[dict[str, float]] = {
        "satisfaction": 0.7,
        "fairness": 0.3,
        "waste": 0.1,
    }
    baselines: ClassVar[tuple[str, ...]] = ("proportional", "equal_share", "greedy")
    strategies: ClassVar[tuple[str, ...]] = tuple(STRATEGY_MULTIPLES)
    state_fields: ClassVar[tuple[str, ...]] = (
        "_mean_need", "_need", "_capacity", "_grant", "_requested", "_satisfaction", "_t",
    )  # fmt: skip
    potentials: ClassVar[tuple[str, ...]] = ("unmet_need", "team_unmet_need")
    trace_fields: ClassVar[tuple[str, ...]] = (
        "allocation", "need", "used", "capacity", "attainable",
    )  # fmt: skip
    constraints: ClassVar[dict[str, str]] = {
        "max_share": (
            "largest share of a resource's current capacity the agent requests > limit "
            "(0 .. 1; a discrete request is its multiple of own need over capacity)"
        ),
    }

    def __init__(self, config: ResourceAllocationConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        b, n, r = batch_size, config.num_agents, config.num_resources
        self._n, self._r = n, r
        self._mean_need = np.zeros((b, n, r), dtype=np.float32)
        self._need = np.zeros((b, n, r), dtype=np.float32)
        self._capacity = np.ones((b, r), dtype=np.float32)
        self._step_capacity = self._capacity  # what the last step allocated (trace)
        self._grant = np.zeros((b, n, r), dtype=np.float32)
        self._requested = np.zeros((b, r), dtype=np.float32)
        self._satisfaction = np.zeros((b, n), dtype=np.float32)
        self._t = np.zeros(b, dtype=np.int64)
        self._obs = np.zeros((b, n, 4 * r + 2), dtype=np.float32)
        self._ones = np.ones((b, n), dtype=np.float32)
        # Needs are kept below 4x capacity, grants below capacity (1.5 at most).
        self.observation_space = gym.spaces.Box(0.0, 8.0, (4 * r + 2,), np.float32)
        self.state_space = gym.spaces.Box(0.0, 8.0, (2 * n * r + r + 1,), np.float32)
        self.action_space = (
            gym.spaces.Discrete(len(DISCRETE_REQUESTS))
            if config.discrete
            else gym.spaces.Box(0.0, 1.0, (r,), np.float32)
        )
        self.action_names = (
            tuple(f"request {m:g} x need" for m in DISCRETE_REQUESTS)
            if config.discrete
            else tuple(f"request resource {i}" for i in range(r))
        )

    @property
    def num_agents(self) -> int:  # noqa: D102
        return self._n

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:  # noqa: D102
        rows = np.arange(self.batch_size) if mask is None else np.flatnonzero(mask)
        k, n, r = len(rows), self._n, self._r
        scarcity = LEVELS[self.get_task()][0]
        # Heterogeneous agents whose mean needs add up to `scarcity` x capacity.
        shares = rng.dirichlet(np.full(n, 2.0), size=(k, r)).transpose(0, 2, 1)
        self._mean_need[rows] = scarcity * shares
        self._need[rows] = self._mean_need[rows]
        self._capacity[rows] = 1.0
        self._grant[rows] = 0.0
        self._requested[rows] = 0.0
        self._satisfaction[rows] = 0.0
        self._t[rows] = 0

    def observe(self) -> np.ndarray:  # noqa: D102
        r, obs = self._r, self._obs
        obs[..., :r] = self._need
        obs[..., r : 2 * r] = self._capacity[:, None, :]
        obs[..., 2 * r : 3 * r] = self._grant
        obs[..., 3 * r : 4 * r] = (self._requested / self._capacity)[:, None, :]
        obs[..., 4 * r] = self._satisfaction
        obs[..., 4 * r + 1] = (self._t * (-1.0 / self.config.episode_length) + 1.0)[:, None]
        return clip(obs, 0.0, 8.0)  # a new array: the views hand rows to RLlib

    def global_state(self) -> np.ndarray:  # noqa: D102
        b = self.batch_size
        time_left = (1.0 - self._t / self.config.episode_length)[:, None]
        state = np.concatenate(
            [self._need.reshape(b, -1), self._grant.reshape(b, -1), self._capacity, time_left],
            axis=-1,
        )
        return np.clip(state, 0.0, 8.0).astype(np.float32)

    def _requests(self, actions: np.ndarray) -> np.ndarray:
        if self.config.discrete:
            return DISCRETE_REQUESTS[actions.astype(np.int64)][..., None] * self._need
        return clip(actions, 0.0, 1.0) * self._capacity[:, None, :]

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:  # noqa: D102
        # float32 throughout; at B=1 the cost is numpy call overhead, so ops are few.
        _, noise, cap_vol, burst = LEVELS[self.get_task()]
        need, capacity = self._need, self._capacity
        request = self._requests(actions)
        total = request.sum(axis=1)  # (B, R)
        scale = np.minimum(capacity / (total + EPS), 1.0)
        grant = request * scale[:, None, :]

        # Needs move on before the grant is used: they drift back to their means with
        # noise (and bursts at expert), so a request must anticipate the coming need.
        mean = self._mean_need
        shock = rng.standard_normal(need.shape, dtype=np.float32) * (noise * mean)
        drifted = mean + NEED_PERSISTENCE * (need - mean) + shock
        if burst > 0:
            drifted = np.where(rng.random(need.shape) < burst, 2.0 * drifted, drifted)
        clip(drifted, 0.0, 4.0, out=need)

        useful = np.minimum(grant, need).sum(-1)
        granted = grant.sum(-1)
        need_total = need.sum(-1) + EPS
        satisfaction = np.minimum(useful / need_total, 1.0)
        waste = (useful - granted) / capacity.sum(-1, keepdims=True)  # <= 0
        ratio = np.minimum(granted / need_total, 1.0)
        fairness = self._ones - gini(ratio)[:, None]
        components = {"satisfaction": satisfaction, "fairness": fairness, "waste": waste}
        self._grant[...] = grant
        self._requested[...] = total
        self._satisfaction[...] = satisfaction
        self._step_capacity = capacity
        if cap_vol > 0:  # the next step's capacity, new: _step_capacity keeps this one
            wobble = 1.0 + cap_vol * rng.standard_normal(capacity.shape, dtype=np.float32)
            self._capacity = clip(wobble, 0.5, 1.5, out=wobble)
        self._t += 1
        return self.time_limit_result(components, self._t, self.config.episode_length)

    def switch_task(self, level: str) -> None:
        """Switch the level now: needs jump to the new scarcity, noise changes next step.

        Every agent's mean need and current need are scaled by the ratio of the new
        level's scarcity to the old one's (so agents see the shift at their next
        observation); need noise, capacity volatility and bursts are read by each step.
        A level without capacity volatility puts every capacity back to 1.
        """
        old_scarcity = LEVELS[self.get_task()][0]
        super().switch_task(level)
        scarcity, _, cap_vol, _ = LEVELS[level]
        factor = np.float32(scarcity / old_scarcity)
        self._mean_need *= factor
        clip(self._need * factor, 0.0, 4.0, out=self._need)
        if cap_vol == 0:
            self._capacity[...] = 1.0

    def trace(self) -> dict[str, np.ndarray]:
        """The last step's allocation, float64, summed over resources (capacity units).

        ``allocation`` (B, N) each agent's grant; ``need`` (B, N) its needs when the grant
        was used; ``used`` (B, N) the part of the grant that met a need (``sum_r min(grant,
        need)``); ``capacity`` (B,) the total capacity allocated; ``attainable`` (B,) the
        most of the needs any allocation could have met, ``sum_r min(sum_i need_ir,
        capacity_r)``.
        """
        need, capacity = self._need, self._step_capacity
        return {
            "allocation": self._grant.sum(-1, dtype=np.float64),
            "need": need.sum(-1, dtype=np.float64),
            "used": np.minimum(self._grant, need).sum(-1, dtype=np.float64),
            "capacity": capacity.sum(-1, dtype=np.float64),
            "attainable": np.minimum(need.sum(1), capacity).sum(-1, dtype=np.float64),
        }

    @classmethod
    def coordination(
        cls, trace: dict[str, np.ndarray], actions: np.ndarray, alive: np.ndarray
    ) -> dict[str, float]:
        """Fairness and efficiency of the allocations; every figure a mean over alive steps.

        * ``gini``: Gini coefficient across agents of ``min(allocation_i / need_i, 1)``
          (:func:`~rl_platform.envs.metrics.gini`): 0 when every agent got the same
          share of its needs, (N - 1) / N when one agent got everything (1 - the mean
          ``fairness`` reward);
        * ``satisfaction``: mean over agents of ``min(used_i / need_i, 1)``, the share of
          its needs an agent had met (the mean ``satisfaction`` reward);
        * ``utilization``: ``sum_i used_i / capacity``, the share of capacity that met a
          need (at most total need / capacity: 0.6 at ``easy``);
        * ``efficiency``: ``sum_i used_i / attainable``, the share of the needs the best
          allocation could have met that this one met (1 when none could be met);
        * ``score``: the mean over steps of ``(1 - gini_t) * efficiency_t``: fair and
          effective at once (requesting nothing is perfectly fair and scores 0).
        """
        need, used = trace["need"] + EPS, trace["used"]
        unfair = gini(np.minimum(trace["allocation"] / need, 1.0))  # (T, B)
        attainable = trace["attainable"]
        met = used.sum(-1)
        efficiency = np.where(attainable > 0, met / np.where(attainable > 0, attainable, 1), 1)
        efficiency = np.clip(efficiency, 0.0, 1.0)
        return {
            "gini": metrics.masked_mean(unfair, alive),
            "satisfaction": metrics.masked_mean(np.minimum(used / need, 1.0), alive),
            "utilization": metrics.masked_mean(met / trace["capacity"], alive),
            "efficiency": metrics.masked_mean(efficiency, alive),
            "score": metrics.clip_unit(metrics.masked_mean((1.0 - unfair) * efficiency, alive)),
        }

    def potential(self, name: str) -> np.ndarray:
        """Phi `name` of the current state, (B, N) float32 in [-1, 0]: 0 when needs are met.

        The grant stays what it was while needs move, so this is how well the last
        allocation fits the needs now, on the scale of the satisfaction reward.
        """
        if name not in self.potentials:
            return super().potential(name)
        need = self._need
        unmet = np.maximum(need - self._grant, 0.0)  # (B, N, R)
        if name == "unmet_need":
            return -unmet.sum(-1) / (need.sum(-1) + EPS)
        share = unmet.sum(axis=(1, 2)) / (need.sum(axis=(1, 2)) + EPS)
        return np.repeat(-share[:, None], self._n, axis=1)

    def constraint_violations(self, name: str, limit: float, actions: np.ndarray) -> np.ndarray:
        """``max_share`` flags (B, N) for actions about to be applied."""
        if name not in self.constraints:
            return super().constraint_violations(name, limit, actions)
        actions = np.asarray(actions)
        if self.config.discrete:
            multiple = DISCRETE_REQUESTS[actions.astype(np.int64)][..., None]
            share = multiple * self._need / self._capacity[:, None, :]
        else:
            share = np.clip(actions, 0.0, 1.0)  # requests are fractions of capacity
        return share.max(axis=-1) > limit

    def observed_violations(
        self, name: str, limit: float, obs: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """``max_share`` flags (B, N) from observations and actions: the env's own.

        A continuous request is a share of capacity already; a discrete one is a multiple
        of the agent's need, which it observes beside each resource's capacity.
        """
        if name not in self.constraints:
            return super().observed_violations(name, limit, obs, actions)
        actions = np.asarray(actions)
        if self.config.discrete:
            r = self._r
            need, capacity = obs[..., :r], obs[..., r : 2 * r]
            multiple = DISCRETE_REQUESTS[actions.astype(np.int64)][..., None]
            share = multiple * need / np.maximum(capacity, EPS)
        else:
            share = np.clip(actions, 0.0, 1.0)
        return share.max(axis=-1) > limit

    def default_action(self) -> np.ndarray:  # noqa: D102
        # Requesting nothing: the counterfactual of "this agent is absent".
        return np.int64(0) if self.config.discrete else np.zeros(self._r, dtype=np.float32)

    def strategy_actions(self, name: str, obs: np.ndarray) -> np.ndarray:
        """Requests of ``STRATEGY_MULTIPLES[name]`` times the agent's observed needs."""
        multiple = STRATEGY_MULTIPLES.get(name)
        if multiple is None:
            return super().strategy_actions(name, obs)
        if self.config.discrete:
            index = int(np.flatnonzero(DISCRETE_REQUESTS == multiple)[0])
            return np.full(obs.shape[:-1], index, dtype=np.int64)
        r = self._r
        need, capacity = obs[..., :r], obs[..., r : 2 * r]
        return np.clip(multiple * need / np.maximum(capacity, EPS), 0.0, 1.0).astype(np.float32)

    def baseline_actions(self, name: str, obs: np.ndarray) -> np.ndarray:  # noqa: D102
        r = self._r
        need, capacity = obs[..., :r], obs[..., r : 2 * r]
        if name == "proportional":
            fraction = need / np.maximum(capacity, EPS)
            index = 2  # request 1 x needs
        elif name == "equal_share":
            fraction = np.full_like(need, 1.0 / self._n)
            index = 1
        elif name == "greedy":
            fraction = np.ones_like(need)
            index = len(DISCRETE_REQUESTS) - 1
        else:
            raise ValueError(f"unknown baseline {name!r}; expected one of {self.baselines}")
        if self.config.discrete:
            return np.full(obs.shape[:-1], index, dtype=np.int64)
        return np.clip(fraction, 0.0, 1.0).astype(np.float32)


class ResourceAllocationEnv(CoreMultiAgentEnv):
    """RLlib ``MultiAgentEnv`` of one copy (PettingZoo: ``parallel_env``)."""

    core_cls = ResourceAllocationCore
    config_model = ResourceAllocationConfig


def parallel_env(**config: object):
    """PettingZoo ``ParallelEnv`` of the resource allocation env."""
    return ResourceAllocationEnv.parallel_env(**config)
