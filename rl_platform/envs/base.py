"""What every platform env shares: a batched numpy core and thin single-copy views.

An env is written once, as a :class:`BatchedCore` stepping B copies x N agents; the
views :class:`CoreMultiAgentEnv` (RLlib) and :class:`CoreParallelEnv` (PettingZoo, in
:mod:`rl_platform.envs.parallel_view`) put one copy behind the standard APIs. Every name
of :mod:`rl_platform.envs.common` is importable from here. The contract:
docs/environments.md and docs/custom-envs.md.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rl_platform.envs import metrics
from rl_platform.envs.common import (
    CoreEnvConfig,
    StepResult,
    agent_ids,
    clip,
    poisson,
    validate_actions,
)
from rl_platform.envs.parallel_view import CoreParallelEnv

__all__ = [
    "BatchedCore",
    "CoreEnvConfig",
    "CoreMultiAgentEnv",
    "CoreParallelEnv",
    "StepResult",
    "agent_ids",
    "clip",
    "poisson",
    "validate_actions",
]


class BatchedCore(ABC):
    """Dynamics of B independent copies of an N-agent env, as arrays.

    Subclasses set ``observation_space``, ``action_space`` (per agent, the same for all
    agents) and ``state_space`` in ``__init__``, keep every piece of per-copy dynamic
    state in the attributes named by ``state_fields`` (so snapshots and counterfactual
    steps work), and draw randomness only from the generator passed to :meth:`reset`
    and :meth:`step`.

    Actions reach :meth:`step` validated by the views (finite, right shape, discrete
    indices in range); continuous actions may lie outside the Box and are clipped by the
    core (policies sample from unbounded Gaussians).
    """

    reward_components: ClassVar[tuple[str, ...]]
    default_reward_weights: ClassVar[dict[str, float]]
    task_levels: ClassVar[tuple[str, ...]] = ("easy", "medium", "hard", "expert")
    baselines: ClassVar[tuple[str, ...]]  # the first is the default heuristic
    state_fields: ClassVar[tuple[str, ...]]
    # Named state potentials Phi(s) for potential-based reward shaping (`rewards.shaping`).
    potentials: ClassVar[tuple[str, ...]] = ()
    # Named per-step quantities an evaluation records (prices, inventories, allocations).
    trace_fields: ClassVar[tuple[str, ...]] = ()
    # Safety constraints a shield can enforce (`rl_platform.safety`): name -> one line
    # saying what is compared with the limit, in which units.
    constraints: ClassVar[dict[str, str]] = {}
    # Named strategies a meta-controller chooses between (`hierarchy:`, see
    # rl_platform.advanced.hierarchical): parameterized option policies over observations.
    strategies: ClassVar[tuple[str, ...]] = ()

    observation_space: gym.spaces.Box
    action_space: gym.Space
    state_space: gym.spaces.Box
    # What each action means, for plots and reports: one name per discrete action, or per
    # dimension of a Box action. Set in ``__init__`` beside ``action_space`` (it depends on
    # the config); () where the core declares none (plots then say a0, a1, ...).
    action_names: tuple[str, ...] = ()

    def __init__(self, config: CoreEnvConfig, batch_size: int) -> None:
        self.config = config
        self.batch_size = batch_size
        weights = {**self.default_reward_weights, **config.reward_weights}
        self.reward_weights = {n: float(weights.get(n, 0.0)) for n in self.reward_components}
        self._weights = [(n, np.float32(w)) for n, w in self.reward_weights.items() if w]
        self._team = np.float32(config.team_reward)
        self._task = getattr(config, "task", self.task_levels[0])

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
        """Apply actions, (B, N, *action_shape); advance every copy one step."""

    @abstractmethod
    def default_action(self) -> np.ndarray:
        """One agent's "do nothing" action (for counterfactual / difference rewards)."""

    @abstractmethod
    def baseline_actions(self, name: str, obs: np.ndarray) -> np.ndarray:
        """Actions (B, N, *action_shape) of the baseline `name` for obs (B, N, obs_dim).

        `name` is one of ``baselines``; baselines see only observations, like policies.
        """

    def strategy_actions(self, name: str, obs: np.ndarray) -> np.ndarray:
        """Actions (B, N, *action_shape) of strategy `name` for observations (B, N, obs_dim).

        `name` is one of ``strategies``; like baselines, strategies see only observations
        and read no state of the core, so any core built with the same config answers.
        """
        raise ValueError(
            f"{type(self).__name__} has no strategy {name!r}; "
            f"expected one of: {', '.join(self.strategies) or '(none declared)'}"
        )

    def potential(self, name: str) -> np.ndarray:
        """Phi of the current state for each agent, (B, N) float32; `name` is in ``potentials``.

        Shaping adds ``gamma * Phi(s') - Phi(s)`` to each reward, which leaves the optimal
        policies unchanged (Ng, Harada and Russell 1999), so a potential only has to point
        the way: larger where the task is closer to done.
        """
        raise ValueError(
            f"{type(self).__name__} has no potential {name!r}; "
            f"expected one of: {', '.join(self.potentials) or '(none declared)'}"
        )

    def constraint_violations(self, name: str, limit: float, actions: np.ndarray) -> np.ndarray:
        """Which agents' `actions` would break constraint `name` at threshold `limit`, now.

        Called before :meth:`step` with the actions (B, N, *action_shape) about to be
        applied, in the current state; it changes no state and draws no randomness. An
        agent's flag depends only on its own action and the state, so replacing one
        agent's action never changes another's flag (the shield relies on this).

        Returns:
            (B, N) bool, true where the agent's action violates the constraint.
        """
        raise ValueError(
            f"{type(self).__name__} has no constraint {name!r}; "
            f"expected one of: {', '.join(self.constraints) or '(none declared)'}"
        )

    def observed_violations(
        self, name: str, limit: float, obs: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """Constraint `name` judged from observations and actions alone (no env state).

        What a policy server can check: it sees a request's observations (B, N, obs_dim)
        and the actions (B, N, *action_shape) it is about to return, never the env. A
        core implements this for the constraints an agent's observation decides, erring
        on the safe side where it cannot see everything (an action is flagged whenever
        it would break the constraint in some state matching the observation), so every
        flag of :meth:`constraint_violations` is also raised here. It reads no state of
        the core: any core built with the same config answers for any batch size.

        Returns:
            (B, N) bool, true where the agent's action violates the constraint.

        Raises:
            ValueError: the core declares no constraint `name`.
            NotImplementedError: the constraint cannot be judged from observations.
        """
        if name not in self.constraints:
            return self.constraint_violations(name, limit, actions)  # raises: unknown name
        raise NotImplementedError(
            f"{type(self).__name__} cannot judge constraint {name!r} from observations "
            "alone: it depends on env state an agent does not observe"
        )

    def default_actions(self, obs: np.ndarray) -> np.ndarray:
        """The default action for every agent of observations (B, N, obs_dim)."""
        shape = obs.shape[:-1] + self.action_space.shape
        return np.broadcast_to(self.default_action(), shape).copy()

    def set_task(self, level: str) -> None:
        """Switch difficulty; takes effect at the next reset. Spaces never change."""
        if level not in self.task_levels:
            raise ValueError(f"unknown task level {level!r}; expected one of {self.task_levels}")
        self._task = level

    def get_task(self) -> str:
        """The current difficulty level."""
        return self._task

    def switch_task(self, level: str) -> None:
        """Switch difficulty now, inside running episodes (adaptability tests).

        Like :meth:`set_task`, but the new level's dynamics apply from the next step on.
        This default suits cores whose :meth:`step` reads the level each step; a core
        that fixes level parameters at reset overrides it to apply them now.
        """
        self.set_task(level)

    def trace(self) -> dict[str, np.ndarray]:
        """This step's traced quantities after step(): name -> (B,) or (B, N) float arrays.

        Keys are exactly ``trace_fields``; the arrays are new (never views of the state),
        so a recorder can keep them.
        """
        return {}

    @classmethod
    def coordination(
        cls, trace: dict[str, np.ndarray], actions: np.ndarray, alive: np.ndarray
    ) -> dict[str, float]:
        """Env-specific coordination figures of played episodes.

        This default, for cores without their own notion, measures how alike the agents
        act: ``action_correlation`` is
        :func:`rl_platform.envs.metrics.action_correlation` (Pearson for
        continuous actions, Cohen's kappa for integer ones) and ``score`` its absolute
        value (0 for independent agents, 1 for agents whose actions determine each
        other's).

        Args:
            trace: name -> (T, B) or (T, B, N) arrays, :meth:`trace` recorded after each
                of T steps.
            actions: (T, B, N, *action_shape) the actions taken.
            alive: (T, B) bool, true where the copy's episode was still running at that
                step (the step that ended it included); later steps are ignored.

        Returns:
            Figures by name, all finite floats; ``score`` is always present, in [0, 1],
            higher = better coordinated. Each override's docstring says how every
            figure is computed and normalized.
        """
        actions = np.asarray(actions)
        discrete = np.issubdtype(actions.dtype, np.integer) and actions.ndim == 3
        correlation = metrics.action_correlation(actions, alive, discrete=discrete)
        return {"action_correlation": correlation, "score": metrics.clip_unit(abs(correlation))}

    def snapshot(self) -> dict[str, np.ndarray]:
        """A copy of all per-copy dynamic state."""
        return {name: np.copy(getattr(self, name)) for name in self.state_fields}

    def restore(self, snapshot: dict[str, np.ndarray]) -> None:
        """Put back state taken by :meth:`snapshot`."""
        for name, value in snapshot.items():
            getattr(self, name)[...] = value

    def counterfactual_rewards(
        self, actions: np.ndarray, rng: np.random.Generator, agent: int
    ) -> np.ndarray:
        """Rewards (B, N) of this step with `agent`'s action replaced by the default.

        Leaves the state and the generator as they were, so the real step that follows
        sees the same random draws (difference rewards need that).
        """
        saved, rng_state = self.snapshot(), copy.deepcopy(rng.bit_generator.state)
        replaced = np.array(actions, copy=True)
        replaced[:, agent] = self.default_action()
        try:
            return self.step(replaced, rng).rewards
        finally:
            self.restore(saved)
            rng.bit_generator.state = rng_state

    def play_episodes(
        self, act: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator
    ) -> np.ndarray:
        """Reset every copy and play one episode in each with ``act(obs) -> actions``.

        Returns:
            (B,) float64: each copy's mean per-agent return over its first episode.
        """
        self.reset(rng)
        returns = np.zeros(self.batch_size)
        running = np.ones(self.batch_size, dtype=bool)
        while running.any():
            result = self.step(act(self.observe()), rng)
            returns += np.where(running, result.rewards.mean(axis=1), 0.0)
            running &= ~(result.terminated | result.truncated)
        return returns

    def time_limit_result(
        self, components: dict[str, np.ndarray], steps: np.ndarray, limit: int
    ) -> StepResult:
        """The step result of an env that never terminates and truncates at `limit` steps."""
        return StepResult(
            rewards=self.weigh(components),
            components=components,
            terminated=np.zeros(self.batch_size, dtype=bool),
            truncated=steps >= limit,
        )

    def weigh(self, components: dict[str, np.ndarray]) -> np.ndarray:
        """Weighted sum of reward components, (B, N) float32."""
        if not self._weights:
            return np.zeros((self.batch_size, self.num_agents), dtype=np.float32)
        (first, weight), *rest = self._weights
        total = weight * components[first]
        for name, weight in rest:
            total += weight * components[name]
        return self.share(total.astype(np.float32, copy=False))

    def share(self, rewards: np.ndarray) -> np.ndarray:
        """Mix each agent's reward (B, N) with the agents' mean by ``team_reward``.

        The mean over agents is unchanged, so scores stay comparable across settings.
        """
        if not self._team:
            return rewards
        team = rewards.mean(axis=1, keepdims=True)
        return rewards + self._team * (team - rewards)


class ForeignCore(BatchedCore):
    """A core around someone else's env (VMAS, PettingZoo): one task level, no extras.

    Such an env has no reward components, curriculum levels, baselines or state fields of
    ours: its reward is one component ("reward"), its one level is "default", and
    evaluation scores it against random play only.
    """

    reward_components: ClassVar[tuple[str, ...]] = ("reward",)
    default_reward_weights: ClassVar[dict[str, float]] = {"reward": 1.0}
    task_levels: ClassVar[tuple[str, ...]] = ("default",)
    baselines: ClassVar[tuple[str, ...]] = ()
    state_fields: ClassVar[tuple[str, ...]] = ()

    def baseline_actions(self, name: str, obs: np.ndarray) -> np.ndarray:  # noqa: D102
        raise ValueError(f"{type(self).__name__} has no baseline {name!r}: it declares none")


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
        self.action_names = self.core.action_names
        self.possible_agents = agent_ids(self.core.num_agents)
        self.agents = list(self.possible_agents)
        self.observation_spaces = {a: self.core.observation_space for a in self.agents}
        self.action_spaces = {a: self.core.action_space for a in self.agents}
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        self.state_space = self.core.state_space
        self._rng = np.random.default_rng()
        self._episode_over = True

    reward_components: ClassVar[tuple[str, ...]] = ()
    task_levels: ClassVar[tuple[str, ...]] = ()
    baselines: ClassVar[tuple[str, ...]] = ()
    potentials: ClassVar[tuple[str, ...]] = ()
    constraints: ClassVar[dict[str, str]] = {}
    strategies: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "core_cls" in cls.__dict__:
            cls.reward_components = cls.core_cls.reward_components
            cls.task_levels = cls.core_cls.task_levels
            cls.baselines = cls.core_cls.baselines
            cls.potentials = cls.core_cls.potentials
            cls.constraints = cls.core_cls.constraints
            cls.strategies = cls.core_cls.strategies

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
        self._episode_over = False
        obs = self.core.observe()[0]
        return dict(zip(self.agents, obs)), {a: {} for a in self.agents}

    def step(self, action_dict: dict[str, Any]):  # noqa: D102 (MultiAgentEnv.step)
        if self._episode_over:
            raise RuntimeError("step() after the episode ended; call reset() first")
        ids = self.possible_agents
        actions = validate_actions(action_dict, ids, self.core.action_space)
        result = self.core.step(actions, self._rng)
        obs = self.core.observe()[0]
        names = tuple(result.components)
        rows = result.agent_components(0)
        infos = {a: {"reward_components": dict(zip(names, row))} for a, row in zip(ids, rows)}
        rewards = dict(zip(ids, result.rewards[0].tolist()))
        term, trunc = bool(result.terminated[0]), bool(result.truncated[0])
        self._episode_over = term or trunc
        terminateds = dict.fromkeys(ids, term)
        terminateds["__all__"] = term
        truncateds = dict.fromkeys(ids, trunc)
        truncateds["__all__"] = trunc
        return dict(zip(ids, obs)), rewards, terminateds, truncateds, infos

    def state(self) -> np.ndarray:
        """Global state, (state_dim,) float32."""
        return self.core.global_state()[0]

    def set_task(self, level: str) -> None:
        """Switch difficulty from the next episode on."""
        self.core.set_task(level)

    def get_task(self) -> str:
        """Current difficulty level."""
        return self.core.get_task()

    def potential(self, name: str) -> dict[str, float]:
        """Each agent's potential Phi(s) `name` (one of ``potentials``) in the current state."""
        return dict(zip(self.possible_agents, self.core.potential(name)[0].tolist()))

    def counterfactual_rewards(self, action_dict: dict[str, Any], agent: str) -> dict[str, float]:
        """Each agent's reward for this step had `agent` taken the default action.

        Call it before :meth:`step` with the same actions; the env's state and random
        generator are left untouched, so the difference with the real step's rewards is
        `agent`'s contribution (difference rewards).
        """
        ids = self.possible_agents
        actions = validate_actions(action_dict, ids, self.core.action_space)
        rewards = self.core.counterfactual_rewards(actions, self._rng, ids.index(agent))
        return dict(zip(ids, rewards[0].tolist()))

    def baseline_actions(self, obs: dict[str, np.ndarray], name: str | None = None) -> dict:
        """Actions of a hand-written baseline (default: the env's first) for one step."""
        name = name or self.core.baselines[0]
        if name not in self.core.baselines:
            raise ValueError(f"unknown baseline {name!r}; expected one of {self.core.baselines}")
        stacked = np.stack([obs[a] for a in self.possible_agents])[None]
        actions = self.core.baseline_actions(name, stacked)[0]
        return dict(zip(self.possible_agents, actions))

    def strategy_actions(
        self, obs: dict[str, np.ndarray], choices: dict[str, str]
    ) -> dict[str, Any]:
        """Each agent's action under its chosen strategy (``choices``: agent -> name)."""
        stacked = np.stack([obs[a] for a in self.possible_agents])[None]
        names = [choices[a] for a in self.possible_agents]
        actions = None
        for name in dict.fromkeys(names):  # each strategy computed once, for all agents
            proposed = self.core.strategy_actions(name, stacked)[0]
            if actions is None:
                actions = np.array(proposed, copy=True)
            mask = np.array([n == name for n in names])
            actions[mask] = proposed[mask]
        return dict(zip(self.possible_agents, actions))

    def heuristic_actions(self, obs: dict[str, np.ndarray]) -> dict[str, Any]:
        """The env's default baseline policy for one step's observations."""
        return self.baseline_actions(obs)
