"""Hierarchical control: a meta-controller picks each agent's strategy every K steps.

The experiment's ``hierarchy:`` section (:class:`~rl_platform.config.HierarchySpec`):
:class:`HierarchicalEnv` (the env's strategies act between choices),
:class:`LearnedHierarchyEnv` (``low_level: learned``), :class:`StrategyMetricsCallback`
(``env_runners/strategy_share/<name>``), :class:`StrategyController` (used by
``bench/hierarchical.py``) and :func:`check` (what is refused). The model:
docs/advanced.md, "Hierarchical control".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rl_platform import registry
from rl_platform.algorithms.common import SHARED_MODULE_ID, module_ids
from rl_platform.config import HierarchySpec
from rl_platform.rewards import RewardEnv

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from rl_platform.config import ExperimentConfig

ALGORITHMS = ("ppo", "ippo", "mappo")  # on-policy; the replay ones need fixed module spaces
SHARE_INFO = "strategy_share"  # in the last infos: strategy -> share of the episode's choices
STRATEGY_INFO = "strategy"  # in every infos: the agent's strategy in force
CONFIG_KEY = "hierarchy"  # the env config's key holding the HierarchySpec as a dict
META_PREFIX = "meta_"  # low_level learned: meta_<agent> is <agent>'s meta-controller
META_MODULE_ID = "meta"  # low_level learned: the meta-controllers' module


def strategy_names(spec: HierarchySpec, env_cls: type) -> list[str]:
    """The strategies offered to the meta-controller, in action-index order."""
    return list(spec.strategies) if spec.strategies else list(env_cls.strategies)


def check(experiment: ExperimentConfig, env_cls: type) -> None:
    """Raise ValueError when the experiment's ``hierarchy`` cannot run on this env/algorithm."""
    spec = experiment.hierarchy
    declared = tuple(getattr(env_cls, "strategies", ()))
    if not declared:
        having = [e for e, entry in sorted(registry.ENVS.items()) if _strategies_of(entry)]
        raise ValueError(
            f"env {experiment.env.id!r} declares no strategies for a meta-controller to "
            f"choose from (BatchedCore.strategies); envs that do: {', '.join(having)}"
        )
    names = strategy_names(spec, env_cls)
    unknown = [name for name in names if name not in declared]
    if unknown:
        raise ValueError(
            f"unknown strategy {', '.join(map(repr, unknown))} of env {experiment.env.id!r}; "
            f"expected some of: {', '.join(declared)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"strategies {names} name one strategy twice")
    if len(names) < 2:
        raise ValueError(f"a meta-controller needs at least two strategies to choose, got {names}")
    if experiment.algorithm.id not in ALGORITHMS:
        raise ValueError(
            f"algorithm {experiment.algorithm.id!r} cannot train a meta-controller; "
            f"use one of: {', '.join(ALGORITHMS)}"
        )
    if experiment.resources.sampler == "batched":
        raise ValueError(
            "resources.sampler: batched steps the env core directly, below the strategies; "
            "use resources.sampler: stock"
        )
    if experiment.evaluation.every > 0:
        raise ValueError(
            "evaluation.every > 0 plays the policy on base actions, not through the "
            "strategies; set evaluation.every: 0 (bench/hierarchical.py evaluates greedily)"
        )


def _strategies_of(entry: Any) -> tuple[str, ...]:
    """A registry entry's strategies; () where its class cannot be loaded."""
    try:
        return tuple(getattr(entry.load(), "strategies", ()))
    except Exception:  # noqa: BLE001 (a broken plugin must not hide the real message)
        return ()


def _one_hot_box(space: Any, size: int) -> Any:
    import gymnasium as gym

    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"a meta-controller needs flat Box observations, got {space}")
    low = np.concatenate([space.low, np.zeros(size)]).astype(np.float32)
    high = np.concatenate([space.high, np.ones(size)]).astype(np.float32)
    return gym.spaces.Box(low, high, dtype=np.float32)


def meta_observation(obs: np.ndarray, choice: np.ndarray, count: int) -> np.ndarray:
    """Observations (..., obs_dim) with the one-hot of ``choice`` (..., ints, -1 = none)."""
    eye = np.vstack([np.eye(count, dtype=np.float32), np.zeros((1, count), dtype=np.float32)])
    return np.concatenate([obs.astype(np.float32, copy=False), eye[choice]], axis=-1)


class StrategyController:
    """Plays a batched core through strategies chosen every K steps by ``choose``.

    ``choose(meta_obs) -> (B, N) strategy indices`` sees what :class:`HierarchicalEnv`'s
    agents see (observations plus the one-hot of the strategy in force, none at the
    start); the chosen strategies act in between. Fixed, random and learned choices
    played through it meet the same K-step semantics. Call :meth:`reset` at the start
    of every episode (all copies start together, as in ``BatchedCore.play_episodes``).
    """

    def __init__(
        self,
        core: Any,
        names: list[str],
        every: int,
        choose: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.core, self.names, self.every, self.choose = core, list(names), every, choose
        self.choices = np.zeros((0, 0), dtype=np.int64)
        self._step = 0

    def reset(self) -> None:
        """Forget the choices: the next call starts new episodes."""
        self.choices = np.zeros((0, 0), dtype=np.int64)
        self._step = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Actions (B, N, *action_shape) for observations (B, N, obs_dim)."""
        if self.choices.shape != obs.shape[:2]:
            self.choices = np.full(obs.shape[:2], -1, dtype=np.int64)
            self._step = 0
        if self._step % self.every == 0:
            meta = meta_observation(obs, self.choices, len(self.names))
            self.choices = np.asarray(self.choose(meta), dtype=np.int64).reshape(obs.shape[:2])
        self._step += 1
        actions = None
        for index in np.unique(self.choices):
            proposed = self.core.strategy_actions(self.names[index], obs)
            if actions is None:
                actions = np.array(proposed, copy=True)
            mask = self.choices == index
            actions[mask] = proposed[mask]
        return actions


class HierarchicalEnv(MultiAgentEnv):
    """The experiment's env seen by meta-controllers that pick strategies every K steps.

    Config: a :class:`~rl_platform.rewards.RewardEnv` config plus ``hierarchy`` (a
    :class:`~rl_platform.config.HierarchySpec` as a dict). Agents are the env's; each
    acts ``Discrete(len(strategies))`` on its observation plus the one-hot of its
    strategy in force. One :meth:`step` plays K base steps (fewer if the episode ends)
    and returns the last observations, the rewards summed over them, the last
    terminated/truncated flags and infos (each agent's ``strategy``; at the episode's
    end also ``strategy_share`` and the reward summary of ``RewardEnv``).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        import gymnasium as gym

        super().__init__()
        self.inner = RewardEnv(config)
        self.hierarchy = HierarchySpec.model_validate(config.get(CONFIG_KEY) or {})
        self.names = strategy_names(self.hierarchy, type(self.inner.inner))
        self.possible_agents = list(self.inner.possible_agents)
        self.agents = list(self.inner.agents)
        count = len(self.names)
        self.observation_spaces = {
            a: _one_hot_box(self.inner.observation_spaces[a], count) for a in self.possible_agents
        }
        self.action_spaces = {a: gym.spaces.Discrete(count) for a in self.possible_agents}
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        self._obs: dict[str, np.ndarray] = {}
        self._choice = dict.fromkeys(self.possible_agents, -1)
        self._counts: Counter[str] = Counter()

    def _wrap(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = len(self.names)
        return {a: meta_observation(o, np.int64(self._choice[a]), count) for a, o in obs.items()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: D102
        obs, infos = self.inner.reset(seed=seed, options=options)
        self.agents = list(self.inner.agents)
        self._obs = obs
        self._choice = dict.fromkeys(self.possible_agents, -1)
        self._counts = Counter()
        return self._wrap(obs), infos

    def _choose(self, choices: dict[str, Any]) -> None:
        """Put each agent's strategy index (agent -> index) in force and count it."""
        for agent, action in choices.items():
            index = int(action)
            if not 0 <= index < len(self.names):
                raise ValueError(
                    f"agent {agent}: strategy index {action!r} out of range "
                    f"0..{len(self.names) - 1}"
                )
            self._choice[agent] = index
            self._counts[self.names[index]] += 1

    def _report_shares(self, infos: dict[str, dict[str, Any]]) -> None:
        """Put the episode's share of choices per strategy in every agent's infos."""
        chosen = sum(self._counts.values()) or 1
        share = {name: self._counts[name] / chosen for name in self.names}
        for info in infos.values():
            info[SHARE_INFO] = share

    def step(self, action_dict: dict[str, Any]):  # noqa: D102
        self._choose(action_dict)
        totals = dict.fromkeys(self._obs, 0.0)
        choices = {a: self.names[self._choice[a]] for a in self._obs}  # fixed for K steps
        for _ in range(self.hierarchy.every):
            actions = self.inner.strategy_actions(self._obs, choices)
            obs, rewards, terms, truncs, infos = self.inner.step(actions)
            for agent, reward in rewards.items():
                totals[agent] = totals.get(agent, 0.0) + reward
            self._obs = obs
            if terms.get("__all__") or truncs.get("__all__"):
                break
        self.agents = list(self.inner.agents)
        for agent in totals:
            infos.setdefault(agent, {})[STRATEGY_INFO] = self.names[self._choice[agent]]
        if terms.get("__all__") or truncs.get("__all__"):
            self._report_shares(infos)
        return self._wrap(obs), totals, terms, truncs, infos

    def state(self) -> np.ndarray:
        """The inner env's global state (for MAPPO's critic)."""
        return self.inner.state()

    @property
    def state_space(self) -> Any:
        """The inner env's global state space."""
        return self.inner.state_space

    def set_task(self, level: str) -> None:
        """Switch the inner env's task level (from its next episode)."""
        self.inner.set_task(level)

    def get_task(self) -> str | None:
        """The inner env's task level."""
        return self.inner.get_task()


class LearnedHierarchyEnv(HierarchicalEnv):
    """``low_level: learned``: meta-controllers and low-level policies, both trained.

    Agents: ``meta_<agent>``, the meta-controllers (``Discrete(len(strategies))`` on the
    base observation plus the one-hot of the strategy in force), and the env's agents,
    which act every base step on their observation plus the one-hot of their
    meta-controller's choice (the strategies' rules are not used: the low-level policy
    learns what each choice means). A decision step (the meta agents act, the env does
    not move, reward 0) alternates with K base steps. After the K-th the meta agents
    observe again, with the K base rewards summed; the base agents observe again after
    the next decision (RLlib adds their last reward to that step). At the episode's end
    every agent observes. ``episode_return_mean`` counts each base reward twice (once
    for the base agent, once in its meta-controller's sum); the per-module returns are
    ``module_episode_returns_mean``.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        import gymnasium as gym

        super().__init__(config)
        base = list(self.inner.possible_agents)
        self.meta_of = {agent: META_PREFIX + agent for agent in base}
        self.possible_agents = [*self.meta_of.values(), *base]
        choice_spaces = self.observation_spaces  # base observation + one-hot, per base agent
        self.observation_spaces = {
            **{self.meta_of[a]: choice_spaces[a] for a in base},
            **choice_spaces,
        }
        self.action_spaces = {
            **{self.meta_of[a]: gym.spaces.Discrete(len(self.names)) for a in base},
            **self.inner.action_spaces,
        }
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        self._deciding = True
        self._since_decision = 0
        self._totals: dict[str, float] = {}

    def _meta_obs(self) -> dict[str, np.ndarray]:
        return {self.meta_of[a]: o for a, o in self._wrap(self._obs).items()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: D102
        super().reset(seed=seed, options=options)
        self._deciding = True
        obs = self._meta_obs()
        self.agents = list(self.possible_agents)  # all in the episode; some act each step
        return obs, {agent: {} for agent in obs}

    def step(self, action_dict: dict[str, Any]):  # noqa: D102
        flags = dict.fromkeys(self.possible_agents, False)
        flags["__all__"] = False
        if self._deciding:
            base = {a for a, m in self.meta_of.items() if m in action_dict}
            self._choose({a: action_dict[self.meta_of[a]] for a in base})
            self._deciding, self._since_decision = False, 0
            self._totals = dict.fromkeys(base, 0.0)
            obs = self._wrap({a: o for a, o in self._obs.items() if a in base})
            infos = {a: {STRATEGY_INFO: self.names[self._choice[a]]} for a in obs}
            return obs, dict.fromkeys(action_dict, 0.0), flags, dict(flags), infos
        obs, rewards, terms, truncs, infos = self.inner.step(action_dict)
        self._obs = obs
        self._since_decision += 1
        for agent, reward in rewards.items():
            self._totals[agent] = self._totals.get(agent, 0.0) + reward
        done = bool(terms.get("__all__") or truncs.get("__all__"))
        out_rewards = dict(rewards)
        out_obs: dict[str, np.ndarray] = {}
        if done or self._since_decision >= self.hierarchy.every:
            out_rewards.update({self.meta_of[a]: r for a, r in self._totals.items()})
            out_obs.update(self._meta_obs())
            self._deciding = True
        if done or not self._deciding:
            out_obs.update(self._wrap(obs))
        if done:
            self.agents = []
        infos = {a: infos.get(a, {}) for a in out_obs}
        for agent, meta in self.meta_of.items():
            if meta in infos:
                infos[meta] = {
                    **infos.get(agent, {}),
                    STRATEGY_INFO: self.names[self._choice[agent]],
                }
        if done:
            self._report_shares(infos)
        terms = {**terms, **{m: terms.get(a, False) for a, m in self.meta_of.items()}}
        truncs = {**truncs, **{m: truncs.get(a, False) for a, m in self.meta_of.items()}}
        return out_obs, out_rewards, terms, truncs, infos


def env_class(spec: HierarchySpec) -> type:
    """The env RLlib builds for a ``hierarchy`` section (its ``low_level``)."""
    return LearnedHierarchyEnv if spec.low_level == "learned" else HierarchicalEnv


def build_env(config: dict[str, Any]) -> MultiAgentEnv:
    """The hierarchical env for an env config holding ``hierarchy`` (see :func:`env_class`)."""
    return env_class(HierarchySpec.model_validate(config[CONFIG_KEY]))(config)


def map_meta_or_shared(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """Policy mapping: meta-controllers -> the ``meta`` module, other agents -> ``shared``."""
    return META_MODULE_ID if agent_id.startswith(META_PREFIX) else SHARED_MODULE_ID


def map_meta_or_self(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """Policy mapping: meta-controllers -> the ``meta`` module, other agents -> their own."""
    return META_MODULE_ID if agent_id.startswith(META_PREFIX) else agent_id


def with_meta_modules(config: Any, experiment: ExperimentConfig, env_cls: type) -> Any:
    """Add the ``meta`` module and its policy mapping for ``low_level: learned``."""
    if experiment.hierarchy is None or experiment.hierarchy.low_level != "learned":
        return config
    shared = experiment.algorithm.shared_policy
    return config.multi_agent(
        policies={*module_ids(experiment, env_cls), META_MODULE_ID},
        policy_mapping_fn=map_meta_or_shared if shared else map_meta_or_self,
    )


class StrategyMetricsCallback(RLlibCallback):
    """Logs each episode's strategy shares as ``env_runners/strategy_share/<name>``."""

    def on_episode_end(self, *, episode, env_runner=None, metrics_logger=None, **kwargs):  # noqa: D102
        if metrics_logger is None:
            return
        share = next(
            (
                info[SHARE_INFO]
                for info in episode.get_infos(-1).values()
                if isinstance(info, dict) and SHARE_INFO in info
            ),
            None,
        )
        if share is None:
            return
        window = getattr(
            getattr(env_runner, "config", None), "metrics_num_episodes_for_smoothing", 100
        )
        for name, value in share.items():
            metrics_logger.log_value((SHARE_INFO, name), value, reduce="mean", window=window)


class HierarchyFeature(registry.Feature):
    """``hierarchy:``: the meta-controller env, its strategy metrics and ``meta`` module."""

    def validate(self, experiment: ExperimentConfig, env_cls: type) -> None:  # noqa: D102
        if experiment.hierarchy is not None:
            check(experiment, env_cls)

    def runner_env(self, experiment: ExperimentConfig) -> type | None:  # noqa: D102
        return None if experiment.hierarchy is None else env_class(experiment.hierarchy)

    def callbacks(self, experiment: ExperimentConfig) -> list[type]:  # noqa: D102
        return [] if experiment.hierarchy is None else [StrategyMetricsCallback]

    def configure(  # noqa: D102
        self, config: AlgorithmConfig, experiment: ExperimentConfig, env_cls: type
    ) -> AlgorithmConfig:
        return with_meta_modules(config, experiment, env_cls)


FEATURE = HierarchyFeature()
