"""Landmark: N agents must each find a distant landmark on a grid; reward only on arrival.

A sparse-reward exploration task for curiosity (Pathak et al. 2017), with
:class:`LandmarkCore` (the batched core) and its RLlib view :class:`LandmarkEnv`. The
grid, the optional wall, observations, rewards, levels, baselines and scores:
docs/environments.md ("landmark").
"""

from __future__ import annotations

from typing import ClassVar, Literal

import gymnasium as gym
import numpy as np
from pydantic import Field, model_validator

from rl_platform.envs import metrics
from rl_platform.envs.base import BatchedCore, CoreEnvConfig, CoreMultiAgentEnv, StepResult

# Where the landmark sits along the diagonal, as a share of the grid, per level.
LANDMARK_REACH = {"easy": 0.25, "medium": 0.5, "hard": 0.75, "expert": 1.0}
# Discrete moves: stay, +x, -x, +y, -y.
MOVES = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.int64)
MOVE_NAMES = ("stay", "right", "left", "up", "down")  # MOVES' rows: +x is right, +y up
# A continuous action moves only when its larger coordinate is at least this in magnitude.
MOVE_THRESHOLD = 0.5


class LandmarkConfig(CoreEnvConfig):
    """Constructor arguments of the landmark env."""

    num_agents: int = Field(default=2, ge=1, le=64)
    grid_size: int = Field(default=15, ge=3, le=32, description="Cells per side.")
    episode_length: int = Field(default=30, ge=1, le=100_000)
    discrete: bool = Field(
        default=True, description="False: a Box(-1, 1, (2,)) whose larger coordinate moves."
    )
    task: Literal["easy", "medium", "hard", "expert"] = "expert"
    wall: bool = Field(
        default=False,
        description="A wall just right of the start, open only at the bottom row (a door).",
    )

    @model_validator(mode="after")
    def _room_behind_the_wall(self) -> LandmarkConfig:
        if self.wall and self.grid_size < 4:
            raise ValueError("wall: true needs grid_size >= 4 (a column behind the wall)")
        return self


class LandmarkCore(BatchedCore):
    """B copies of the landmark grid."""

    reward_components: ClassVar[tuple[str, ...]] = ("arrival", "success")
    default_reward_weights: ClassVar[dict[str, float]] = {"arrival": 1.0, "success": 0.0}
    task_levels: ClassVar[tuple[str, ...]] = tuple(LANDMARK_REACH)
    baselines: ClassVar[tuple[str, ...]] = ("direct", "still")
    state_fields: ClassVar[tuple[str, ...]] = ("_pos", "_arrived", "_landmark", "_t")
    potentials: ClassVar[tuple[str, ...]] = ("progress",)
    trace_fields: ClassVar[tuple[str, ...]] = ("arrived", "distance")

    def __init__(self, config: LandmarkConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        b, n, g = batch_size, config.num_agents, config.grid_size
        self._n, self._g = n, g
        self._pos = np.zeros((b, n, 2), dtype=np.int64)
        self._arrived = np.zeros((b, n), dtype=bool)
        self._landmark = np.zeros((b, 2), dtype=np.int64)
        self._t = np.zeros(b, dtype=np.int64)
        self._start = np.full(2, (g - 1) // 2, dtype=np.int64)  # the center cell
        self._wall_x = int(self._start[0]) + 1
        self._blocked = np.zeros((g, g), dtype=bool)  # (x, y) cells agents cannot enter
        if config.wall:
            self._blocked[self._wall_x, 1:] = True
        self._scale = np.float32(1.0 / (g - 1))
        self._obs = np.zeros((b, n, g * g + 2), dtype=np.float32)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (g * g + 2,), np.float32)
        self.state_space = gym.spaces.Box(0.0, 1.0, (3 * n + 3,), np.float32)
        self.action_space = (
            gym.spaces.Discrete(len(MOVES))
            if config.discrete
            else gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        )
        self.action_names = MOVE_NAMES if config.discrete else ("move x", "move y")

    @property
    def num_agents(self) -> int:  # noqa: D102
        return self._n

    def _landmark_cell(self) -> np.ndarray:
        """The level's landmark: its share of the way from the start to the corner (g-1, g-1)."""
        corner = np.array([self._g - 1, self._g - 1])
        cell = self._start + np.rint(LANDMARK_REACH[self.get_task()] * (corner - self._start))
        if self.config.wall:  # always behind the wall
            cell[0] = max(cell[0], self._wall_x + 1)
        return cell

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:  # noqa: D102
        rows = np.arange(self.batch_size) if mask is None else np.flatnonzero(mask)
        self._pos[rows] = self._start
        self._arrived[rows] = False
        self._landmark[rows] = self._landmark_cell()
        self._t[rows] = 0

    def switch_task(self, level: str) -> None:
        """Switch the level now: the landmark moves to the new level's cell at once.

        Agents already at the old landmark stay arrived; the others must find the new one.
        """
        super().switch_task(level)
        self._landmark[...] = self._landmark_cell()

    def observe(self) -> np.ndarray:  # noqa: D102
        obs, g = self._obs, self._g
        obs[...] = 0.0
        cells = self._pos[..., 0] * g + self._pos[..., 1]  # (B, N)
        np.put_along_axis(obs, cells[..., None], 1.0, axis=-1)
        obs[..., g * g :] = (self._landmark * self._scale)[:, None]
        return obs.copy()  # the views hand rows to RLlib, which keeps them

    def global_state(self) -> np.ndarray:  # noqa: D102
        time_left = 1.0 - self._t / self.config.episode_length
        parts = [
            self._pos.reshape(self.batch_size, -1) * self._scale,
            self._arrived,
            self._landmark * self._scale,
            time_left[:, None],
        ]
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def moves(self, actions: np.ndarray) -> np.ndarray:
        """Actions (B, N[, 2]) -> cell offsets (B, N, 2) int64."""
        if self.config.discrete:
            return MOVES[actions.astype(np.int64)]
        clipped = np.clip(actions, -1.0, 1.0)
        axis = np.abs(clipped).argmax(-1)
        value = np.take_along_axis(clipped, axis[..., None], -1)[..., 0]
        move = np.where(axis == 0, np.where(value > 0, 1, 2), np.where(value > 0, 3, 4))
        return MOVES[np.where(np.abs(value) >= MOVE_THRESHOLD, move, 0)]

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:  # noqa: D102
        offsets = np.where(self._arrived[..., None], 0, self.moves(actions))
        target = np.clip(self._pos + offsets, 0, self._g - 1)
        blocked = self._blocked[target[..., 0], target[..., 1]]
        self._pos[...] = np.where(blocked[..., None], self._pos, target)
        before = self._arrived.copy()
        self._arrived |= (self._pos == self._landmark[:, None]).all(-1)
        arrival = (self._arrived & ~before).astype(np.float32)
        done = self._arrived.all(-1)
        finished = done & ~before.all(-1)
        success = np.repeat(finished[:, None], self._n, axis=1).astype(np.float32)
        self._t += 1
        components = {"arrival": arrival, "success": success}
        return StepResult(
            rewards=self.weigh(components),
            components=components,
            terminated=done,
            truncated=~done & (self._t >= self.config.episode_length),
        )

    def _distance(self) -> np.ndarray:
        """Manhattan distance (B, N) of each agent to the landmark."""
        return np.abs(self._pos - self._landmark[:, None]).sum(-1)

    def potential(self, name: str) -> np.ndarray:
        """``progress``: minus the distance to the landmark over 2 (grid_size - 1), (B, N)."""
        if name != "progress":
            return super().potential(name)
        return (-self._distance() * (self._scale / 2)).astype(np.float32)

    def trace(self) -> dict[str, np.ndarray]:
        """``arrived`` (B,) the share of agents at the landmark; ``distance`` (B, N) cells."""
        return {
            "arrived": self._arrived.mean(axis=1, dtype=np.float64),
            "distance": self._distance().astype(np.float64),
        }

    @classmethod
    def coordination(
        cls, trace: dict[str, np.ndarray], actions: np.ndarray, alive: np.ndarray
    ) -> dict[str, float]:
        """How many agents found the landmark.

        * ``arrived``: per copy, the share of agents at the landmark after its last alive
          step, mean over copies;
        * ``success``: the share of copies where every agent arrived;
        * ``score``: ``arrived`` (1 when every agent finds the landmark).
        """
        final = metrics.last_alive(np.asarray(trace["arrived"], dtype=np.float64), alive)
        return {
            "arrived": float(final.mean()),
            "success": float((final >= 1.0).mean()),
            "score": metrics.clip_unit(final.mean()),
        }

    def default_action(self) -> np.ndarray:  # noqa: D102
        return np.int64(0) if self.config.discrete else np.zeros(2, dtype=np.float32)

    def baseline_actions(self, name: str, obs: np.ndarray) -> np.ndarray:  # noqa: D102
        if name == "still":
            return self.default_actions(obs)
        if name != "direct":
            raise ValueError(f"unknown baseline {name!r}; expected one of {self.baselines}")
        g = self._g
        cell = obs[..., : g * g].argmax(-1)
        here = np.stack([cell // g, cell % g], axis=-1)
        target = np.rint(obs[..., g * g :] * (g - 1)).astype(np.int64)
        gap = target - here
        axis = np.abs(gap).argmax(-1)
        sign = np.take_along_axis(gap, axis[..., None], -1)[..., 0]
        move = np.where(axis == 0, np.where(sign > 0, 1, 2), np.where(sign > 0, 3, 4))
        move = np.where(sign == 0, 0, move)
        if self.config.wall:  # left of the wall: down to the door, then through it
            down = (here[..., 0] < self._wall_x) & (here[..., 1] > 0)
            move = np.where(here[..., 0] <= self._wall_x, np.where(down, 4, 1), move)
        if self.config.discrete:
            return move.astype(np.int64)
        return (MOVES[move] * np.float32(1.0)).astype(np.float32)


class LandmarkEnv(CoreMultiAgentEnv):
    """RLlib ``MultiAgentEnv`` of one landmark grid (PettingZoo: ``parallel_env``)."""

    core_cls = LandmarkCore
    config_model = LandmarkConfig


def parallel_env(**config: object):
    """PettingZoo ``ParallelEnv`` of the landmark env."""
    return LandmarkEnv.parallel_env(**config)
