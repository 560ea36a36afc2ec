"""Coverage: N agents spread over K valued targets for a team reward (credit assignment).

The congestion / coverage game of Agogino and Tumer's difference-rewards papers, with
:class:`CoverageCore` (the batched core) and its RLlib view :class:`CoverageEnv`. The
game, observations, actions, levels, baselines and scores: docs/environments.md
("coverage").
"""

from __future__ import annotations

from typing import ClassVar, Literal

import gymnasium as gym
import numpy as np
from pydantic import Field

from rl_platform.envs import metrics
from rl_platform.envs.base import BatchedCore, CoreEnvConfig, CoreMultiAgentEnv, StepResult

MEDIUM_VALUE_RANGE = (0.5, 1.5)  # uniform target values at medium
SKEWED_VALUE_SIGMA = 1.0  # lognormal sigma of the target values at hard and expert
# Preference scores of the continuous action: the chosen option scores high, the rest low.
CHOSEN_SCORE, OTHER_SCORE = 1.0, -1.0


class CoverageConfig(CoreEnvConfig):
    """Constructor arguments of the coverage env."""

    num_agents: int = Field(default=6, ge=2, le=64)
    num_targets: int = Field(default=6, ge=1, le=64)
    episode_length: int = Field(default=10, ge=1, le=100_000)
    discrete: bool = Field(
        default=True,
        description="False: a Box(-1, 1, (K+1,)) of preference scores; the argmax is taken.",
    )
    task: Literal["easy", "medium", "hard", "expert"] = "easy"


class CoverageCore(BatchedCore):
    """B copies of the coverage game."""

    reward_components: ClassVar[tuple[str, ...]] = ("coverage", "crowding")
    default_reward_weights: ClassVar[dict[str, float]] = {"coverage": 1.0, "crowding": 0.0}
    baselines: ClassVar[tuple[str, ...]] = ("greedy", "same")
    state_fields: ClassVar[tuple[str, ...]] = ("_values", "_occupancy", "_t")
    potentials: ClassVar[tuple[str, ...]] = ("coverage",)
    trace_fields: ClassVar[tuple[str, ...]] = (
        "coverage", "best_coverage", "targets_covered", "crowded", "idle",
    )  # fmt: skip

    def __init__(self, config: CoverageConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        b, n, k = batch_size, config.num_agents, config.num_targets
        self._n, self._k = n, k
        self._values = np.ones((b, k), dtype=np.float32)
        self._played_values = self._values  # the values the last step was played for
        self._rng: np.random.Generator | None = None  # the episodes' (for switch_task)
        self._occupancy = np.zeros((b, k), dtype=np.float32)  # agents per target, last step
        self._t = np.zeros(b, dtype=np.int64)
        # Copy b's choices are counted in bins b*(K+1) ... b*(K+1) + K (the last: idle).
        self._bin_offsets = (np.arange(b) * (k + 1))[:, None]
        self._obs = np.zeros((b, n, n + 2 * k + 1), dtype=np.float32)
        self._obs[..., :n] = np.eye(n, dtype=np.float32)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n + 2 * k + 1,), np.float32)
        self.state_space = gym.spaces.Box(0.0, 1.0, (2 * k + 1,), np.float32)
        self.action_space = (
            gym.spaces.Discrete(k + 1)
            if config.discrete
            else gym.spaces.Box(-1.0, 1.0, (k + 1,), np.float32)
        )
        self.action_names = (*(f"target {i}" for i in range(k)), "idle")

    @property
    def num_agents(self) -> int:  # noqa: D102
        return self._n

    def _draw_values(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Target values (count, K) float32 of the current level."""
        level, shape = self.get_task(), (count, self._k)
        if level == "easy":
            return np.ones(shape, dtype=np.float32)
        if level == "medium":
            return rng.uniform(*MEDIUM_VALUE_RANGE, size=shape).astype(np.float32)
        return rng.lognormal(0.0, SKEWED_VALUE_SIGMA, size=shape).astype(np.float32)

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:  # noqa: D102
        rows = np.arange(self.batch_size) if mask is None else np.flatnonzero(mask)
        self._rng = rng
        self._values[rows] = self._draw_values(rng, len(rows))
        self._occupancy[rows] = 0.0
        self._t[rows] = 0

    def _time_left(self) -> np.ndarray:
        return np.float32(1.0) - self._t.astype(np.float32) / self.config.episode_length

    def _relative_values(self) -> np.ndarray:
        return self._values / self._values.max(axis=1, keepdims=True)

    def observe(self) -> np.ndarray:  # noqa: D102
        obs, n, k = self._obs, self._n, self._k
        obs[..., n : n + k] = self._relative_values()[:, None]
        obs[..., n + k : n + 2 * k] = (self._occupancy / n)[:, None]
        obs[..., -1] = self._time_left()[:, None]
        return obs.copy()  # the views hand rows to RLlib, which keeps them

    def global_state(self) -> np.ndarray:  # noqa: D102
        parts = [self._relative_values(), self._occupancy / self._n, self._time_left()[:, None]]
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def choices(self, actions: np.ndarray) -> np.ndarray:
        """Actions (B, N[, K+1]) -> chosen option (B, N) int64: a target, or K for idle."""
        if self.config.discrete:
            return actions.astype(np.int64)
        return actions.argmax(axis=-1)

    def _coverage(self, occupancy: np.ndarray) -> np.ndarray:
        """Share (B,) float32 of the total target value covered by at least one agent."""
        values = self._values
        return (values * (occupancy > 0)).sum(axis=1) / values.sum(axis=1)

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:  # noqa: D102
        chosen = self.choices(actions)
        b, n, k = self.batch_size, self._n, self._k
        self._played_values = self._values
        bins = (chosen + self._bin_offsets).ravel()
        counts = np.bincount(bins, minlength=b * (k + 1)).reshape(b, k + 1)  # last column: idle
        self._occupancy[...] = counts[:, :k]
        coverage = np.repeat(self._coverage(self._occupancy)[:, None], n, axis=1)
        shared = (np.take_along_axis(counts, chosen, axis=1) > 1) & (chosen < k)
        crowding = np.where(shared, np.float32(-1.0), np.float32(0.0))
        components = {"coverage": coverage, "crowding": crowding}
        if self.get_task() == "expert":  # the next step is played for new values
            self._values = self._draw_values(rng, b)  # new: _played_values keeps the old
        self._t += 1
        return self.time_limit_result(components, self._t, self.config.episode_length)

    def switch_task(self, level: str) -> None:
        """Switch the level now: every copy's target values are drawn anew at `level`.

        The draw uses the generator of the running episodes (the one passed to
        :meth:`reset`), so agents see the new values at their next observation.
        """
        if self._rng is None:
            raise RuntimeError("switch_task() before reset(): no episode to switch")
        super().switch_task(level)
        self._values = self._draw_values(self._rng, self.batch_size)

    def trace(self) -> dict[str, np.ndarray]:
        """The last step's coverage, float64, all (B,) shares in [0, 1].

        ``coverage`` the value share of the targets covered (the reward);
        ``best_coverage`` the largest share N agents could have covered (the
        min(N, K) most valuable targets); ``targets_covered`` the share of targets with
        an agent; ``crowded`` the share of agents that shared their target with another;
        ``idle`` the share of agents that stayed out.
        """
        values, occupancy = self._played_values.astype(np.float64), self._occupancy
        total = values.sum(axis=1)
        top = -np.sort(-values, axis=1)[:, : min(self._n, self._k)]
        return {
            "coverage": (values * (occupancy > 0)).sum(axis=1) / total,
            "best_coverage": top.sum(axis=1) / total,
            "targets_covered": (occupancy > 0).mean(axis=1, dtype=np.float64),
            "crowded": (occupancy * (occupancy > 1)).sum(axis=1, dtype=np.float64) / self._n,
            "idle": 1.0 - occupancy.sum(axis=1, dtype=np.float64) / self._n,
        }

    @classmethod
    def coordination(
        cls, trace: dict[str, np.ndarray], actions: np.ndarray, alive: np.ndarray
    ) -> dict[str, float]:
        """Coverage achieved and how the agents spread; figures are means over alive steps.

        * ``coverage``: the value share of the targets covered (the mean ``coverage``
          reward);
        * ``targets_covered``: the share of targets with at least one agent;
        * ``collisions``: the share of agents on a target with another agent (the
          ``crowding`` component's count over N);
        * ``idle``: the share of agents that stayed out;
        * ``score``: per copy, the episode's summed coverage over the summed best
          possible coverage (the min(N, K) most valuable targets covered every step),
          mean over copies: 1 for an optimal spread, e.g. the ``greedy`` baseline.
        """
        best = metrics.masked_sum(trace["best_coverage"], alive)
        achieved = metrics.masked_sum(trace["coverage"], alive)
        ratio = np.where(best > 0, achieved / np.where(best > 0, best, 1.0), 0.0)
        return {
            "coverage": metrics.masked_mean(trace["coverage"], alive),
            "targets_covered": metrics.masked_mean(trace["targets_covered"], alive),
            "collisions": metrics.masked_mean(trace["crowded"], alive),
            "idle": metrics.masked_mean(trace["idle"], alive),
            "score": metrics.clip_unit(ratio.mean()),
        }

    def potential(self, name: str) -> np.ndarray:
        """Coverage of last step's occupancy under the current values, (B, N) float32."""
        if name != "coverage":
            return super().potential(name)
        return np.repeat(self._coverage(self._occupancy)[:, None], self._n, axis=1)

    def _actions_for(self, chosen: np.ndarray) -> np.ndarray:
        """Chosen options (B, N) -> actions in this env's action space."""
        if self.config.discrete:
            return chosen.astype(np.int64)
        scores = np.full((*chosen.shape, self._k + 1), OTHER_SCORE, dtype=np.float32)
        np.put_along_axis(scores, chosen[..., None], CHOSEN_SCORE, axis=-1)
        return scores

    def default_action(self) -> np.ndarray:  # noqa: D102
        # Idle: the counterfactual "this agent is absent" of difference rewards.
        if self.config.discrete:
            return np.int64(self._k)
        return self._actions_for(np.array(self._k))

    def baseline_actions(self, name: str, obs: np.ndarray) -> np.ndarray:  # noqa: D102
        n, k = self._n, self._k
        values = obs[..., n : n + k]
        if name == "greedy":
            index = obs[..., :n].argmax(axis=-1)
            ranked = np.argsort(-values, axis=-1, kind="stable")  # most valuable first
            own = np.take_along_axis(ranked, np.minimum(index, k - 1)[..., None], -1)[..., 0]
            chosen = np.where(index < k, own, k)
        elif name == "same":
            chosen = values.argmax(axis=-1)
        else:
            raise ValueError(f"unknown baseline {name!r}; expected one of {self.baselines}")
        return self._actions_for(chosen)


class CoverageEnv(CoreMultiAgentEnv):
    """RLlib ``MultiAgentEnv`` of one coverage game (PettingZoo: ``parallel_env``)."""

    core_cls = CoverageCore
    config_model = CoverageConfig


def parallel_env(**config: object):
    """PettingZoo ``ParallelEnv`` of the coverage env."""
    return CoverageEnv.parallel_env(**config)
