"""What every platform env shares: a batched numpy core and thin single-copy views.

An env is written once, as a :class:`BatchedCore` that steps B copies x N agents with
vector math. Two views put one copy (B=1) behind the standard APIs:

* :class:`CoreMultiAgentEnv`, an RLlib ``MultiAgentEnv`` (what training uses);
* :class:`CoreParallelEnv`, a PettingZoo ``ParallelEnv`` (what PettingZoo's test suite
  and tools see).

Both views expose the global state (``state()``, ``state_space``) for centralized critics,
the task level (``set_task``/``get_task``) for curricula, and each step's reward split
into components in ``infos[agent]["reward_components"]``.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv
from pydantic import BaseModel, ConfigDict, Field
from ray.rllib.env.multi_agent_env import MultiAgentEnv


class CoreEnvConfig(BaseModel):
    """Options every env accepts; each env's config model extends it."""

    model_config = ConfigDict(extra="forbid")

    reward_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Reward component -> weight; set from the experiment's `rewards.weights`.",
    )


@dataclass
class StepResult:
    """What one batched step returns; arrays are indexed (copy, agent)."""

    rewards: np.ndarray  # (B, N) float32, the weighted sum of the components
    components: dict[str, np.ndarray]  # name -> (B, N), unweighted
    terminated: np.ndarray  # (B,) bool: the task ended (no bootstrapping)
    truncated: np.ndarray  # (B,) bool: a time limit was hit


class BatchedCore(ABC):
    """Dynamics of B independent copies of an N-agent env, as arrays.

    Subclasses set ``observation_space``, ``action_space`` (per agent, the same for all
    agents) and ``state_space`` in ``__init__``, and draw randomness only from the
    generator passed to :meth:`reset`.
    """

    reward_components: ClassVar[tuple[str, ...]]
    default_reward_weights: ClassVar[dict[str, float]]
    task_levels: ClassVar[tuple[str, ...]]

    observation_space: gym.spaces.Box
    action_space: gym.Space
    state_space: gym.spaces.Box

    def __init__(self, config: CoreEnvConfig, batch_size: int) -> None:
        self.config = config
        self.batch_size = batch_size
        weights = {**self.default_reward_weights, **config.reward_weights}
        self.reward_weights = {n: float(weights.get(n, 0.0)) for n in self.reward_components}

    @property
    @abstractmethod
    def num_agents(self) -> int:
        """Agents per copy."""

    @abstractmethod
    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:
        """Start new episodes in the copies where `mask` (B,) is true (all when None)."""

    @abstractmethod
    def observe(self) -> np.ndarray:
        """Observations, (B, N, obs_dim) float32."""

    @abstractmethod
    def global_state(self) -> np.ndarray:
        """Global state for centralized critics, (B, state_dim) float32."""

    @abstractmethod
    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:
        """Apply actions, (B, N, *action_shape), already validated; advance one step."""

    @abstractmethod
    def heuristic_actions(self, obs: np.ndarray) -> np.ndarray:
        """A hand-written baseline policy's actions for observations (B, N, obs_dim)."""

    @abstractmethod
    def set_task(self, level: str) -> None:
        """Switch difficulty; takes effect at the next reset. Spaces never change."""

    @abstractmethod
    def get_task(self) -> str:
        """The current difficulty level."""

    def weigh(self, components: dict[str, np.ndarray]) -> np.ndarray:
        """Weighted sum of reward components, (B, N) float32."""
        total = np.zeros((self.batch_size, self.num_agents), dtype=np.float32)
        for name, value in components.items():
            weight = self.reward_weights[name]
            if weight:
                total += np.float32(weight) * value
        return total


def agent_ids(num_agents: int) -> list[str]:
    """The platform's agent naming: agent_0 ... agent_{N-1}."""
    return [f"agent_{i}" for i in range(num_agents)]


def validate_actions(actions: dict[str, Any], agents: list[str], space: gym.Space) -> np.ndarray:
    """Stack per-agent actions into (1, N, *shape), refusing missing or non-finite ones.

    Continuous actions outside the Box are clipped by the core (policies sample from
    unbounded Gaussians); discrete actions outside the range are an error.
    """
    missing = [a for a in agents if a not in actions]
    if missing:
        raise ValueError(f"no action for agent(s) {', '.join(missing)}")
    stacked = []
    for agent in agents:
        value = np.asarray(actions[agent])
        if isinstance(space, gym.spaces.Discrete):
            if value.size != 1 or not np.isfinite(value).all():
                raise ValueError(f"agent {agent}: action {actions[agent]!r} is not an integer")
            index = int(value.reshape(()))
            if not 0 <= index < space.n:
                raise ValueError(
                    f"agent {agent}: action {index} out of range, expected 0..{space.n - 1}"
                )
            stacked.append(index)
        else:
            if value.shape != space.shape:
                raise ValueError(
                    f"agent {agent}: action shape {value.shape}, expected {space.shape}"
                )
            if not np.isfinite(value).all():
                raise ValueError(f"agent {agent}: action {value.tolist()} is not finite")
            stacked.append(value.astype(np.float32))
    return np.asarray(stacked)[None]


class CoreMultiAgentEnv(MultiAgentEnv):
    """RLlib view of one copy of a :class:`BatchedCore`.

    Subclasses set ``core_cls`` and ``config_model``; the constructor takes the env
    config dict RLlib passes (unknown keys are refused by the config model).
    """

    core_cls: ClassVar[type[BatchedCore]]
    config_model: ClassVar[type[CoreEnvConfig]]

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.env_config = self.config_model.model_validate(dict(config or {}))
        self.core = self.core_cls(self.env_config, batch_size=1)
        self.possible_agents = agent_ids(self.core.num_agents)
        self.agents = list(self.possible_agents)
        self.observation_spaces = {a: self.core.observation_space for a in self.agents}
        self.action_spaces = {a: self.core.action_space for a in self.agents}
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        self.state_space = self.core.state_space
        self._rng = np.random.default_rng()

    reward_components: ClassVar[tuple[str, ...]] = ()
    task_levels: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "core_cls" in cls.__dict__:
            cls.reward_components = cls.core_cls.reward_components
            cls.task_levels = cls.core_cls.task_levels

    @classmethod
    def parallel_env(cls, **config: Any) -> CoreParallelEnv:
        """The same dynamics as a PettingZoo ``ParallelEnv``."""
        return CoreParallelEnv(cls(config))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        """Start an episode; a seed re-seeds the env's only random generator."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.core.reset(self._rng)
        obs = self.core.observe()[0]
        return {a: obs[i] for i, a in enumerate(self.agents)}, {a: {} for a in self.agents}

    def step(self, action_dict: dict[str, Any]):  # noqa: D102 (MultiAgentEnv.step)
        actions = validate_actions(action_dict, self.possible_agents, self.core.action_space)
        result = self.core.step(actions, self._rng)
        obs = self.core.observe()[0]
        ids = self.possible_agents
        rewards = {a: float(result.rewards[0, i]) for i, a in enumerate(ids)}
        infos = {
            a: {"reward_components": {k: float(v[0, i]) for k, v in result.components.items()}}
            for i, a in enumerate(ids)
        }
        term, trunc = bool(result.terminated[0]), bool(result.truncated[0])
        terminateds = {a: term for a in ids} | {"__all__": term}
        truncateds = {a: trunc for a in ids} | {"__all__": trunc}
        return {a: obs[i] for i, a in enumerate(ids)}, rewards, terminateds, truncateds, infos

    def state(self) -> np.ndarray:
        """Global state, (state_dim,) float32."""
        return self.core.global_state()[0]

    def set_task(self, level: str) -> None:
        """Switch difficulty from the next episode on."""
        self.core.set_task(level)

    def get_task(self) -> str:
        """Current difficulty level."""
        return self.core.get_task()

    def heuristic_actions(self, obs: dict[str, np.ndarray]) -> dict[str, Any]:
        """The env's hand-written baseline policy for one step's observations."""
        stacked = np.stack([obs[a] for a in self.possible_agents])[None]
        actions = self.core.heuristic_actions(stacked)[0]
        return {a: actions[i] for i, a in enumerate(self.possible_agents)}


class CoreParallelEnv(ParallelEnv):
    """PettingZoo view of one copy of a :class:`BatchedCore`."""

    metadata: ClassVar[dict[str, Any]] = {"name": "core", "render_modes": []}

    def __init__(self, env: CoreMultiAgentEnv) -> None:
        self._env = env
        self.possible_agents = list(env.possible_agents)
        self.agents: list[str] = []
        self.render_mode = None
        self.metadata = {"name": type(env).__name__, "render_modes": [], "is_parallelizable": True}

    @functools.cache  # noqa: B019 (spaces are fixed per instance)
    def observation_space(self, agent: str) -> gym.Space:
        """Per-agent observation space."""
        return self._env.observation_spaces[agent]

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> gym.Space:
        """Per-agent action space."""
        return self._env.action_spaces[agent]

    @property
    def state_space(self) -> gym.Space:
        """Space of :meth:`state`."""
        return self._env.state_space

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode (PettingZoo semantics)."""
        obs, infos = self._env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return obs, infos

    def step(self, actions: dict[str, Any]):
        """One simultaneous step; agents leave `agents` when the episode ends."""
        obs, rewards, terms, truncs, infos = self._env.step(actions)
        terms.pop("__all__")
        truncs.pop("__all__")
        if any(terms.values()) or any(truncs.values()):
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def state(self) -> np.ndarray:
        """Global state."""
        return self._env.state()

    def set_task(self, level: str) -> None:
        """Switch difficulty from the next episode on."""
        self._env.set_task(level)

    def get_task(self) -> str:
        """Current difficulty level."""
        return self._env.get_task()

    def close(self) -> None:
        """Nothing to release."""
