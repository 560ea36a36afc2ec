"""Rendezvous: N agents on a plane meet without a leader.

The consensus task of multi-robot coordination: :class:`RendezvousCore` (the batched
core) and its RLlib view :class:`RendezvousEnv`. Observations, actions, rewards, levels,
the ``max_speed`` constraint, potentials, baselines and scores: docs/environments.md
("rendezvous").
"""

from __future__ import annotations

from typing import ClassVar, Literal

import gymnasium as gym
import numpy as np
from pydantic import Field

from rl_platform.envs import metrics
from rl_platform.envs.base import BatchedCore, CoreEnvConfig, CoreMultiAgentEnv, StepResult

SPAWN_RADIUS = {"easy": 0.25, "medium": 0.5, "hard": 0.75, "expert": 1.0}
# Discrete moves: stay, +x, -x, +y, -y.
MOVES = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float32)
MOVE_NAMES = ("stay", "right", "left", "up", "down")  # MOVES' rows: +x is right, +y up


class RendezvousConfig(CoreEnvConfig):
    """Constructor arguments of the rendezvous env."""

    num_agents: int = Field(default=3, ge=2, le=64)
    episode_length: int = Field(default=25, ge=1, le=100_000)
    discrete: bool = Field(default=False, description="5 discrete moves instead of a velocity.")
    max_speed: float = Field(default=0.1, gt=0, le=1, description="Distance moved per step.")
    task: Literal["easy", "medium", "hard", "expert"] = "medium"


class RendezvousCore(BatchedCore):
    """B copies of the rendezvous dynamics."""

    reward_components: ClassVar[tuple[str, ...]] = ("proximity", "effort")
    default_reward_weights: ClassVar[dict[str, float]] = {"proximity": 1.0, "effort": 0.05}
    task_levels: ClassVar[tuple[str, ...]] = tuple(SPAWN_RADIUS)
    baselines: ClassVar[tuple[str, ...]] = ("centroid", "still")
    state_fields: ClassVar[tuple[str, ...]] = ("_pos", "_t")
    potentials: ClassVar[tuple[str, ...]] = ("proximity", "spread")
    trace_fields: ClassVar[tuple[str, ...]] = ("x", "y", "spread")
    constraints: ClassVar[dict[str, str]] = {
        "max_speed": (
            "speed the action commands > limit, in units of max_speed: the norm of the "
            "clipped velocity action (up to 1.41 diagonally; a discrete move 1, staying 0)"
        ),
    }

    def __init__(self, config: RendezvousConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        n = config.num_agents
        self._n = n
        self._pos = np.zeros((batch_size, n, 2), dtype=np.float32)
        self._t = np.zeros(batch_size, dtype=np.int64)
        self._rng: np.random.Generator | None = None  # the episodes' (for switch_task)
        # For each agent i, the indices of the other agents in order: (N, N-1).
        others = np.array([[j for j in range(n) if j != i] for i in range(n)])
        self._rows = np.repeat(np.arange(n)[:, None], n - 1, axis=1)
        self._others = others
        obs_dim = 2 + 2 * (n - 1) + 1
        self._obs = np.zeros((batch_size, n, obs_dim), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (obs_dim,), np.float32)
        self.state_space = gym.spaces.Box(-1.0, 1.0, (2 * n + 1,), np.float32)
        self.action_space = (
            gym.spaces.Discrete(len(MOVES))
            if config.discrete
            else gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        )
        self.action_names = MOVE_NAMES if config.discrete else ("velocity x", "velocity y")

    @property
    def num_agents(self) -> int:  # noqa: D102
        return self._n

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:  # noqa: D102
        rows = np.arange(self.batch_size) if mask is None else np.flatnonzero(mask)
        self._rng = rng
        self._scatter(rows)
        self._t[rows] = 0

    def _scatter(self, rows: np.ndarray) -> None:
        """Place the agents of copies `rows` uniformly within the level's spawn radius."""
        radius = SPAWN_RADIUS[self.get_task()]
        self._pos[rows] = self._rng.uniform(-radius, radius, size=(len(rows), self._n, 2))

    def switch_task(self, level: str) -> None:
        """Switch the level now: every copy's agents are scattered anew within its radius.

        The level only sets where agents start, so a switch is a regrouping challenge:
        the agents must meet again from the new level's spread. The draw uses the
        generator of the running episodes (the one passed to :meth:`reset`); the step
        count goes on.
        """
        if self._rng is None:
            raise RuntimeError("switch_task() before reset(): no episode to switch")
        super().switch_task(level)
        self._scatter(np.arange(self.batch_size))

    def trace(self) -> dict[str, np.ndarray]:
        """Positions after the last step, float64.

        ``x`` and ``y`` (B, N) each agent's coordinates; ``spread`` (B,) the mean
        distance between two agents.
        """
        pos = self._pos.astype(np.float64)
        return {"x": pos[..., 0], "y": pos[..., 1], "spread": _spread(pos)}

    @classmethod
    def coordination(
        cls, trace: dict[str, np.ndarray], actions: np.ndarray, alive: np.ndarray
    ) -> dict[str, float]:
        """How close the agents came; spread = mean distance between two agents.

        * ``mean_spread``: the spread averaged over alive steps and copies;
        * ``final_spread``: the spread after each copy's last alive step, mean over
          copies;
        * ``score``: per copy, ``1 - final_spread / peak_spread`` with the peak the
          largest spread after any alive step (1.0 where it is 0: the agents never
          stood apart), clipped to [0, 1], mean over copies: the share of its widest
          spread the team closed by the end. 1 when the agents meet, 0 when they never
          drew closer than their widest; after a ``switch_task`` re-scatter to a wider
          radius the peak is the new spread, so the score measures the regrouping.
        """
        spread = np.asarray(trace["spread"], dtype=np.float64)
        final = metrics.last_alive(spread, alive)
        peak = np.where(alive, spread, 0.0).max(axis=0)
        closed = np.where(peak > 0, 1.0 - final / np.where(peak > 0, peak, 1.0), 1.0)
        return {
            "mean_spread": metrics.masked_mean(spread, alive),
            "final_spread": float(final.mean()),
            "score": metrics.clip_unit(np.clip(closed, 0.0, 1.0).mean()),
        }

    def _time_left(self) -> np.ndarray:
        return np.float32(1.0) - self._t.astype(np.float32) / self.config.episode_length

    def observe(self) -> np.ndarray:  # noqa: D102
        obs, n = self._obs, self._n
        obs[..., :2] = self._pos
        # rel[b, i, k] = position of the k-th other agent minus agent i's position.
        rel = self._pos[:, self._others] - self._pos[:, self._rows]
        obs[..., 2 : 2 * n] = rel.reshape(self.batch_size, n, -1)
        obs[..., -1] = self._time_left()[:, None]
        return obs.copy()  # the views hand rows to RLlib, which keeps them

    def global_state(self) -> np.ndarray:  # noqa: D102
        flat = self._pos.reshape(self.batch_size, -1)
        return np.concatenate([flat, self._time_left()[:, None]], axis=-1).astype(np.float32)

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:  # noqa: D102
        effort = self._move(actions)
        components = {"proximity": self._proximity(), "effort": -effort}
        return self.time_limit_result(components, self._t, self.config.episode_length)

    def _move(self, actions: np.ndarray) -> np.ndarray:
        """Move every agent by its action (clipped to the arena); returns its effort (B, N)."""
        speed = self.config.max_speed
        if self.config.discrete:
            actions = actions.astype(np.int64)
            velocity = MOVES[actions] * speed
            effort = (actions != 0).astype(np.float32)
        else:
            clipped = np.clip(actions, -1.0, 1.0)
            velocity = clipped * speed
            effort = np.square(clipped).sum(-1)
        np.clip(self._pos + velocity, -1.0, 1.0, out=self._pos)
        self._t += 1
        return effort

    def _proximity(self) -> np.ndarray:
        """Minus each agent's distance to the centroid of the others, (B, N) float32."""
        total = self._pos.sum(axis=1, keepdims=True)
        centroid_of_others = (total - self._pos) / (self._n - 1)
        return -np.sqrt(np.square(self._pos - centroid_of_others).sum(-1))

    def potential(self, name: str) -> np.ndarray:
        """Phi `name` of the current state, (B, N) float32: 0 when the agents meet.

        ``proximity`` is each agent's own (the proximity reward of this state, about one
        step's reward); ``spread``, minus the mean pairwise distance, is the team's.
        """
        if name == "proximity":
            return self._proximity()
        if name == "spread":
            return np.repeat(-_spread(self._pos)[:, None], self._n, axis=1)
        return super().potential(name)

    def constraint_violations(self, name: str, limit: float, actions: np.ndarray) -> np.ndarray:
        """``max_speed`` flags (B, N) for actions about to be applied."""
        if name not in self.constraints:
            return super().constraint_violations(name, limit, actions)
        if self.config.discrete:
            velocity = MOVES[np.asarray(actions, dtype=np.int64)]
        else:
            velocity = np.clip(actions, -1.0, 1.0)
        return np.sqrt(np.square(velocity).sum(-1)) > limit

    def observed_violations(
        self, name: str, limit: float, obs: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """``max_speed`` from the action alone (B, N): the same flags as the env's."""
        if name not in self.constraints:
            return super().observed_violations(name, limit, obs, actions)
        return self.constraint_violations(name, limit, actions)  # it reads no state

    def default_action(self) -> np.ndarray:  # noqa: D102
        return np.int64(0) if self.config.discrete else np.zeros(2, dtype=np.float32)

    def baseline_actions(self, name: str, obs: np.ndarray) -> np.ndarray:  # noqa: D102
        if name == "still":
            return self.default_actions(obs)
        rel = obs[..., 2 : 2 + 2 * (self._n - 1)].reshape(*obs.shape[:-1], self._n - 1, 2)
        direction = rel.mean(axis=-2)  # toward the centroid of the others
        if not self.config.discrete:
            return np.clip(direction / self.config.max_speed, -1.0, 1.0).astype(np.float32)
        axis = np.abs(direction).argmax(-1)
        sign = np.take_along_axis(direction, axis[..., None], -1)[..., 0] > 0
        move = np.where(axis == 0, np.where(sign, 1, 2), np.where(sign, 3, 4))
        close = np.abs(direction).max(-1) < self.config.max_speed / 2
        return np.where(close, 0, move).astype(np.int64)


def _spread(pos: np.ndarray) -> np.ndarray:
    """Mean distance between two agents, (B,), of positions (B, N, 2)."""
    n = pos.shape[1]
    gaps = pos[:, :, None] - pos[:, None]  # (B, N, N, 2)
    return np.sqrt(np.square(gaps).sum(-1)).sum(axis=(1, 2)) / (n * (n - 1))


class RendezvousEnv(CoreMultiAgentEnv):
    """RLlib ``MultiAgentEnv`` of one rendezvous copy (PettingZoo: ``parallel_env``)."""

    core_cls = RendezvousCore
    config_model = RendezvousConfig


def parallel_env(**config: object):
    """PettingZoo ``ParallelEnv`` of the rendezvous env."""
    return RendezvousEnv.parallel_env(**config)
