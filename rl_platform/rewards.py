"""Reward engineering for any env, from the experiment's ``rewards`` section.

:class:`BatchedRewards` makes each agent's training reward from the env's own (already
weighted) reward on (copies, agents) arrays: difference rewards, potential-based shaping,
a coordination bonus. :class:`RewardEnv` wraps a registered env (every algorithm trains
through it) as its one-copy view; the batched sampler runs it over B copies.
:class:`RewardMetricsCallback` logs each part as ``env_runners/rewards/<name>``. The
terms, their papers and what is reported: docs/rewards.md.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rl_platform import registry
from rl_platform.config import RewardsSpec
from rl_platform.monitoring import EpisodeWindow, smoothing_window
from rl_platform.safety import SafetySpec, Shield, shield_action_dict

ENV_REWARD = "env"
TOTAL = "total"
EPISODE_INFO = "episode_rewards"
SAFETY = "safety"  # -penalty per shield intervention (a reward term)
INTERVENTIONS = "interventions"  # shield interventions per agent (a count, not a reward)
TASK_INFO = "task"


def reward_parts(experiment: Any) -> list[str]:
    """Names of the reward parts an experiment's episodes report, in display order."""
    env_cls = registry.get_env(experiment.env.id).load()
    rewards = experiment.rewards
    engineered = [
        name
        for name, on in (
            ("difference", rewards.difference),
            ("shaping", rewards.shaping is not None),
            ("coordination", rewards.coordination is not None),
        )
        if on
    ]
    if experiment.safety is not None and experiment.safety.enabled:
        engineered += [SAFETY, INTERVENTIONS]
    return [ENV_REWARD, *env_cls.reward_components, *engineered, TOTAL]


def make_env(
    env_id: str, env_config: dict[str, Any], env_class: type | None = None
) -> MultiAgentEnv:
    """Build a registered env with the entry's bound config merged in.

    ``env_class`` (the entry's class, resolved in the driver) spares the lookup, which env
    runner processes cannot do for envs registered at run time (plugins, tests).
    """
    entry = registry.get_env(env_id)
    if env_class is None:
        if entry is None:
            raise ValueError(f"unknown env {env_id!r}")
        env_class = entry.load()
    bound = entry.bound_config if entry is not None else {}
    return env_class({**env_config, **bound})


def shaping_term(phi: Any, phi_next: Any, gamma: float, terminated: Any) -> Any:
    """``gamma * Phi(s') - Phi(s)``, with the potential of a terminal state taken as 0.

    Elementwise on arrays (potentials (B, N), `terminated` broadcastable to them).
    """
    return np.where(terminated, 0.0, gamma * phi_next) - phi


def action_vectors(actions: np.ndarray, space: gym.Space) -> np.ndarray:
    """Actions (..., *space.shape) as flat float vectors (..., D): one-hot for Discrete."""
    actions = np.asarray(actions)
    if isinstance(space, gym.spaces.Discrete):
        return np.eye(space.n)[actions.astype(np.int64) - space.start]
    lead = actions.shape[: actions.ndim - len(space.shape)]
    return actions.astype(np.float64).reshape(*lead, -1)


def action_vector(action: Any, space: gym.Space) -> np.ndarray:
    """One action as a flat float vector (:func:`action_vectors` of one)."""
    return action_vectors(np.asarray(action)[None], space)[0]


def mean_cosine_similarities(vectors: np.ndarray) -> np.ndarray:
    """For each agent of (B, N, D), its mean cosine similarity with the copy's others; (B, N).

    A zero vector has similarity 0 with everything; a single agent gets 0.
    """
    count = vectors.shape[1]
    if count < 2:
        return np.zeros(vectors.shape[:2])
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    similarity = unit @ unit.transpose(0, 2, 1)
    diagonal = np.einsum("bnn->bn", similarity)
    return (similarity.sum(axis=-1) - diagonal) / (count - 1)


def mean_cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    """:func:`mean_cosine_similarities` of one copy: (N, D) -> (N,)."""
    return mean_cosine_similarities(np.asarray(vectors)[None])[0]


class BatchedRewards:
    """The reward composition of ``rewards`` (and the shield's penalty) on (B, N) arrays.

    The one implementation: :class:`RewardEnv` is its B=1 view (dicts in, dicts out) and
    the batched sampler (:mod:`rl_platform.sampling`) feeds it B copies at once. It keeps
    each copy's episode totals of every part (:attr:`totals`: name -> (B, N) float64, all
    in one array, added to once a step) and makes the episode summary reported in the
    last infos (:meth:`summaries`).

    Each :meth:`compose` call covers agents ``columns`` of every copy (all by default; a
    B=1 view passes the agents the env rewarded this step). Per-agent means in the
    summaries are over the agents rewarded at least once in the episode.
    """

    def __init__(
        self, spec: RewardsSpec, batch_size: int, num_agents: int, penalty: float | None = None
    ) -> None:
        shaping = spec.shaping
        if shaping is not None and shaping.gamma is None:
            raise ValueError("rewards.shaping.gamma must be resolved before the env is built")
        self.spec = spec
        coordination = spec.coordination
        self.bonus = 0.0
        if coordination is not None:
            self.bonus = coordination.weight * (1.0 if coordination.prefer == "similar" else -1.0)
        self.penalty = penalty  # None: no shield, no safety parts
        self.shape = (batch_size, num_agents)
        self.names: tuple[str, ...] = ()  # the parts summed so far: the rows of `_sums`
        self._sums = np.zeros((0, *self.shape))
        self.seen = np.zeros(self.shape, dtype=bool)
        self._seen_all = False  # every agent of every copy rewarded since the last start
        self.phi = np.zeros(self.shape)
        self.levels: list[str | None] = [None] * batch_size

    @property
    def totals(self) -> dict[str, np.ndarray]:
        """Each part's episode sums so far, name -> (B, N) float64 (views)."""
        return dict(zip(self.names, self._sums))

    def start(
        self, mask: np.ndarray | None = None, phi: np.ndarray | None = None, level: Any = None
    ) -> None:
        """Copies `mask` (all when None) start an episode at potentials `phi` (B, N), `level`."""
        rows = slice(None) if mask is None else mask
        self._sums[:, rows] = 0.0
        self.seen[rows] = False
        self._seen_all = False
        if phi is not None:
            self.phi[rows] = phi[rows]
        for b in range(self.shape[0]) if mask is None else np.flatnonzero(mask).tolist():
            self.levels[b] = level

    def compose(
        self,
        env_reward: np.ndarray,
        *,
        columns: Any = slice(None),
        terminated: Any = False,
        phi_next: np.ndarray | None = None,
        vectors: np.ndarray | None = None,
        counterfactual: np.ndarray | None = None,
        shielded: np.ndarray | None = None,
        components: tuple[tuple[str, ...], Any] = ((), ()),
    ) -> np.ndarray:
        """The training reward (B, K) float64 of a step just taken, for agents `columns`.

        Args:
            env_reward: (B, K) the env's (weighted, team-shared) reward.
            columns: which K of the N agents the arrays hold (an index of the agent axis).
            terminated: broadcastable to (B, K): the episode ended there (Phi(s') = 0).
            phi_next: (B, N) potentials after the step, all agents (with shaping).
            vectors: (B, K, D) the actions as vectors (:func:`action_vectors`; with a
                coordination bonus).
            counterfactual: (B, K) each agent's team reward had it taken the default
                action (difference rewards).
            shielded: (B, K) bool, the agent's action was replaced by the shield.
            components: names and their unweighted values, summed per episode: one
                (C, B, K) array, or C (B, K) arrays or nested lists.
        """
        spec = self.spec
        total = np.asarray(env_reward, dtype=np.float64)
        names, values = [ENV_REWARD], [total]
        if spec.difference:
            total = total.mean(axis=1, keepdims=True) - counterfactual
            names.append("difference")
            values.append(total)
        if spec.shaping is not None:
            shaping = spec.shaping
            term = shaping.weight * shaping_term(
                self.phi[:, columns], phi_next[:, columns], shaping.gamma, terminated
            )
            self.phi[...] = phi_next
            names.append("shaping")
            values.append(term)
            total = total + term
        if self.bonus:
            bonus = self.bonus * mean_cosine_similarities(vectors)
            names.append("coordination")
            values.append(bonus)
            total = total + bonus
        if self.penalty is not None and shielded is not None:
            safety = np.where(shielded, -self.penalty, 0.0)
            names += [INTERVENTIONS, SAFETY]
            values += [shielded, safety]
            total = total + safety
        names.append(TOTAL)
        values.append(total)
        engineered = len(names)
        component_names, component_values = components
        names = (*names, *component_names)
        if self.names[: len(names)] != names:
            self._layout(names)
        sums = self._sums
        if isinstance(component_values, np.ndarray):
            sums[:engineered, :, columns] += values
            sums[engineered : len(names), :, columns] += component_values
        else:  # one conversion and one add for everything
            sums[: len(names), :, columns] += [*values, *component_values]
        if columns != slice(None):
            self.seen[:, columns] = True
        elif not self._seen_all:
            self.seen[...] = self._seen_all = True
        return total

    def _layout(self, names: tuple[str, ...]) -> None:
        """Sum parts `names` (in this order) from now on, keeping the sums so far."""
        known = self.totals
        known.update((name, np.zeros(self.shape)) for name in names if name not in known)
        self.names = (*names, *(name for name in known if name not in names))
        self._sums = np.stack([known[name] for name in self.names])

    def summaries(self, copies: np.ndarray) -> list[dict[str, Any]]:
        """The last-step infos entry of each copy's episode: per-agent means of the parts."""
        count = np.maximum(self.seen[copies].sum(axis=1), 1)[:, None]
        means = (self._sums[:, copies] / count).sum(axis=2).T.tolist()
        return [
            {EPISODE_INFO: dict(zip(self.names, row)), TASK_INFO: self.levels[copy]}
            for row, copy in zip(means, np.asarray(copies).tolist())
        ]


class RewardEnv(MultiAgentEnv):
    """A registered env whose rewards are composed as the experiment's ``rewards`` says.

    Config: ``env_id``, optionally ``env_class`` (its class, see :func:`make_env`),
    ``env_config`` (its constructor config), ``rewards`` (a
    :class:`~rl_platform.config.RewardsSpec` as a dict, with the shaping gamma resolved)
    and ``safety`` (a :class:`~rl_platform.config.SafetySpec` as a dict, or None): with
    it every action passes the constraint shield before the env steps, an agent whose
    action was replaced gets ``-penalty`` (the ``safety`` part) and the episode reports
    its ``interventions``.
    Spaces, agents, ``state()``, task levels and the rest of the inner env's API pass
    through. The rewards are :class:`BatchedRewards`' for one copy (``rewards``).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.inner = make_env(
            config["env_id"], config.get("env_config", {}), config.get("env_class")
        )
        self.spec_ = RewardsSpec.model_validate(config.get("rewards", {}))
        self.possible_agents = list(self.inner.possible_agents)
        self.agents = list(self.inner.agents)
        self.observation_spaces = dict(self.inner.observation_spaces)
        self.action_spaces = dict(self.inner.action_spaces)
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        self._shield = None
        penalty = None
        if config.get("safety"):
            self._shield = Shield.for_env(
                self.inner, SafetySpec.model_validate(config["safety"]), max_entries=0
            )
            penalty = self._shield.spec.penalty
        self.rewards = BatchedRewards(self.spec_, 1, len(self.possible_agents), penalty)
        self._column = {agent: n for n, agent in enumerate(self.possible_agents)}
        self._all_columns = list(range(len(self.possible_agents)))

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this wrapper lacks (baselines, the core, ...).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def state_space(self) -> gym.Space:
        """The inner env's global state space."""
        return self.inner.state_space

    def state(self) -> np.ndarray:
        """The inner env's global state."""
        return self.inner.state()

    def set_task(self, level: str) -> None:
        """Switch the inner env's task level (from its next episode)."""
        self.inner.set_task(level)

    def get_task(self) -> str | None:
        """The inner env's task level (None for envs without levels)."""
        get_task = getattr(self.inner, "get_task", None)
        return get_task() if callable(get_task) else None

    def _potentials(self) -> np.ndarray | None:
        shaping = self.spec_.shaping
        if shaping is None:
            return None
        phi = self.inner.potential(shaping.potential)
        return np.array([[phi.get(agent, 0.0) for agent in self.possible_agents]])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: D102
        obs, infos = self.inner.reset(seed=seed, options=options)
        self.agents = list(self.inner.agents)
        self.rewards.start(phi=self._potentials(), level=self.get_task())
        return obs, infos

    def step(self, action_dict: dict[str, Any]):  # noqa: D102
        spec = self.spec_
        shielded = None
        if self._shield is not None and self._shield.spec.enabled:
            action_dict, entries = shield_action_dict(self.inner, action_dict, self._shield)
            shielded = {entry.agent for entry in entries}
        counterfactual = {}
        if spec.difference:
            for agent in action_dict:
                rewards = self.inner.counterfactual_rewards(action_dict, agent)
                counterfactual[agent] = sum(rewards.values()) / len(rewards)
        obs, rewards, terms, truncs, infos = self.inner.step(action_dict)
        self.agents = list(self.inner.agents)
        agents = list(rewards)
        columns = [self._column[agent] for agent in agents]
        if columns == self._all_columns:
            columns = slice(None)
        kwargs: dict[str, Any] = {}
        if spec.difference:
            team = sum(rewards.values()) / len(rewards)
            kwargs["counterfactual"] = np.array([[counterfactual.get(a, team) for a in agents]])
        if spec.shaping is not None:
            ended = terms.get("__all__", False)
            kwargs["phi_next"] = self._potentials()
            kwargs["terminated"] = np.array([[bool(terms.get(a) or ended) for a in agents]])
        if self.rewards.bonus:
            vectors = [action_vector(action_dict[a], self.action_spaces[a]) for a in agents]
            kwargs["vectors"] = np.stack(vectors)[None]
        if shielded is not None:
            kwargs["shielded"] = np.array([[agent in shielded for agent in agents]])
        kwargs["components"] = self._components(agents, infos)
        total = self.rewards.compose(
            np.array([list(rewards.values())], dtype=np.float64), columns=columns, **kwargs
        )
        shaped = dict(zip(agents, total[0].tolist()))
        if terms.get("__all__") or truncs.get("__all__"):
            self._report(infos, agents)
        return obs, shaped, terms, truncs, infos

    def episode_totals(self, agent: str) -> dict[str, float]:
        """`agent`'s sums of every reward part over the episode so far."""
        column = self._column[agent]
        return {name: float(totals[0, column]) for name, totals in self.rewards.totals.items()}

    @staticmethod
    def _components(agents: list[str], infos: dict[str, Any]) -> tuple[tuple[str, ...], list]:
        """The agents' ``reward_components`` infos: their names and (C, 1, K) values."""
        empty: dict[str, Any] = {}
        parts = [infos.get(agent, empty).get("reward_components", empty) for agent in agents]
        if not parts:
            return (), []
        names = tuple(parts[0])
        if len(set(map(len, parts))) == 1:  # the usual case: every agent has the same parts
            try:
                return names, [[[part[name] for part in parts]] for name in names]
            except KeyError:
                pass
        names = tuple(dict.fromkeys(name for part in parts for name in part))
        return names, [[[part.get(name, 0.0) for part in parts]] for name in names]

    def _report(self, infos: dict[str, dict[str, Any]], agents: list[str]) -> None:
        """Put the episode's per-agent mean of every reward part in the last infos."""
        (summary,) = self.rewards.summaries(np.zeros(1, dtype=np.int64))
        for agent in list(infos) or agents:
            info = infos.setdefault(agent, {})
            info[EPISODE_INFO] = dict(summary[EPISODE_INFO])
            info[TASK_INFO] = summary[TASK_INFO]


def episode_summary(episode: Any) -> dict[str, Any] | None:
    """The last infos entry of an episode that carries the reward summary, or None."""
    agent_episodes = getattr(episode, "agent_episodes", None)
    if agent_episodes is not None:
        # Only the last step's infos carry the summary: each agent's latest infos suffice,
        # read from the buffers directly (``get_infos(-1)`` costs 40 us an episode).
        for sa_episode in agent_episodes.values():
            data = sa_episode.infos.data
            info = data[-1] if len(data) else None
            if isinstance(info, dict) and EPISODE_INFO in info:
                return info
        return None
    for info in episode.get_infos(-1).values():
        if isinstance(info, dict) and EPISODE_INFO in info:
            return info
    return None


class RewardMetricsCallback(RLlibCallback):
    """Logs each episode's reward parts as ``env_runners/rewards/<name>`` (means).

    Means over the last ``metrics_num_episodes_for_smoothing`` episodes, logged at
    ``on_sample_end`` (see :class:`~rl_platform.monitoring.EpisodeWindow`).
    """

    def __init__(self) -> None:
        super().__init__()
        self._window = EpisodeWindow()

    def on_episode_end(self, *, episode, env_runner=None, metrics_logger=None, **kwargs):  # noqa: D102
        info = episode_summary(episode)
        if info is None or metrics_logger is None:
            return
        for name, value in info[EPISODE_INFO].items():
            self._window.add(("rewards", name), value)

    def on_sample_end(self, *, env_runner=None, metrics_logger=None, **kwargs):  # noqa: D102
        self._window.flush(metrics_logger, smoothing_window(env_runner))


class RewardsFeature(registry.Feature):
    """The ``rewards`` section: the runner env computes the reward parts, a callback logs them.

    Every run trains on :class:`RewardEnv` (the engineered reward, whatever the algorithm;
    features may name an env around it).
    """

    def runner_env(self, experiment: Any) -> type:  # noqa: D102
        return RewardEnv

    def callbacks(self, experiment: Any) -> list[type]:  # noqa: D102
        return [RewardMetricsCallback]


FEATURE = RewardsFeature()
