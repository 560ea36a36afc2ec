"""Reward engineering for any env, from the experiment's ``rewards`` section.

:class:`RewardEnv` wraps a registered env (every algorithm trains through it) and makes
each agent's training reward from the env's own (already weighted) reward:

* **difference rewards** (``difference: true``): the team reward G (the mean over
  agents) minus G had the agent taken the env's default action instead, computed with
  the env's counterfactual hook on the same random draws (Wolpert and Tumer 2002). It
  keeps what each agent contributed and drops the noise of what the others did;
* **potential-based shaping** (``shaping``): ``weight * (gamma * Phi(s') - Phi(s))`` with
  a potential the env declares, ``Phi(s') = 0`` at a terminal state, which leaves the
  optimal policies unchanged when gamma is the algorithm's (Ng, Harada and Russell 1999;
  Devlin and Kudenko 2011 for Nash equilibria);
* **coordination bonus** (``coordination``): ``weight`` times the mean cosine similarity
  of the agent's action with each other agent's (discrete actions as one-hot vectors),
  added with ``prefer: similar`` and subtracted with ``prefer: diverse``.

Every part is summed over the episode and reported once, at its last step, in each
agent's ``infos["episode_rewards"]`` (per-agent means: ``env`` is the task reward, then
the env's unweighted components, the engineered terms and ``total``, the reward trained
on), with the task level the episode was played at in ``infos["task"]``.
:class:`RewardMetricsCallback` logs them as ``env_runners/rewards/<name>``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rl_platform import registry
from rl_platform.config import RewardsSpec

ENV_REWARD = "env"
TOTAL = "total"
EPISODE_INFO = "episode_rewards"
SAFETY = "safety"  # -penalty per shield intervention (a reward term)
INTERVENTIONS = "interventions"  # shield interventions per agent (a count, not a reward)
TASK_INFO = "task"


def reward_parts(experiment: Any) -> list[str]:
    """Names of the reward parts an experiment's episodes report, in display order."""
    from rl_platform import registry

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


def shaping_term(phi: float, phi_next: float, gamma: float, terminated: bool) -> float:
    """``gamma * Phi(s') - Phi(s)``, with the potential of a terminal state taken as 0."""
    return (0.0 if terminated else gamma * phi_next) - phi


def action_vector(action: Any, space: gym.Space) -> np.ndarray:
    """An action as a flat float vector: one-hot for Discrete, flattened for Box."""
    if isinstance(space, gym.spaces.Discrete):
        vector = np.zeros(space.n, dtype=np.float64)
        vector[int(action) - space.start] = 1.0
        return vector
    return np.asarray(action, dtype=np.float64).ravel()


def mean_cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    """For each row of (N, D), its mean cosine similarity with every other row; (N,).

    A zero vector has similarity 0 with everything; a single agent gets 0.
    """
    count = len(vectors)
    if count < 2:
        return np.zeros(count)
    norms = np.linalg.norm(vectors, axis=1)
    unit = vectors / np.where(norms > 0, norms, 1.0)[:, None]
    similarity = unit @ unit.T
    return (similarity.sum(axis=1) - np.diag(similarity)) / (count - 1)


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
    through.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.inner = make_env(
            config["env_id"], config.get("env_config", {}), config.get("env_class")
        )
        self.spec_ = RewardsSpec.model_validate(config.get("rewards", {}))
        shaping = self.spec_.shaping
        if shaping is not None and shaping.gamma is None:
            raise ValueError("rewards.shaping.gamma must be resolved before the env is built")
        self.possible_agents = list(self.inner.possible_agents)
        self.agents = list(self.inner.agents)
        self.observation_spaces = dict(self.inner.observation_spaces)
        self.action_spaces = dict(self.inner.action_spaces)
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        coordination = self.spec_.coordination
        self._bonus = 0.0
        if coordination is not None:
            self._bonus = coordination.weight * (1.0 if coordination.prefer == "similar" else -1.0)
        self._shield = None
        if config.get("safety"):
            from rl_platform.safety import SafetySpec, Shield, shield_action_dict

            self._shield_step = shield_action_dict  # imported once, not per step
            self._shield = Shield.for_env(
                self.inner, SafetySpec.model_validate(config["safety"]), max_entries=0
            )
            self._penalty = self._shield.spec.penalty
        self._phi: dict[str, float] = {}
        self._totals: dict[str, defaultdict[str, float]] = {}
        self._level: str | None = None

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

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: D102
        obs, infos = self.inner.reset(seed=seed, options=options)
        self.agents = list(self.inner.agents)
        self._level = self.get_task()
        self._totals = {}
        if self.spec_.shaping is not None:
            self._phi = self.inner.potential(self.spec_.shaping.potential)
        return obs, infos

    def step(self, action_dict: dict[str, Any]):  # noqa: D102
        spec = self.spec_
        shielded: set[str] | None = None
        if self._shield is not None and self._shield.spec.enabled:
            action_dict, entries = self._shield_step(self.inner, action_dict, self._shield)
            shielded = {entry.agent for entry in entries}
        counterfactual = {}
        if spec.difference:
            for agent in action_dict:
                rewards = self.inner.counterfactual_rewards(action_dict, agent)
                counterfactual[agent] = sum(rewards.values()) / len(rewards)
        obs, rewards, terms, truncs, infos = self.inner.step(action_dict)
        self.agents = list(self.inner.agents)
        parts = {agent: {ENV_REWARD: float(r)} for agent, r in rewards.items()}
        if spec.difference:
            team = sum(rewards.values()) / len(rewards)
            for agent, part in parts.items():
                part["difference"] = team - counterfactual.get(agent, team)
        if spec.shaping is not None:
            self._add_shaping(parts, terms)
        if self._bonus:
            self._add_coordination(parts, action_dict)
        if shielded is not None:
            for agent, part in parts.items():
                hit = agent in shielded
                part[INTERVENTIONS] = float(hit)
                part[SAFETY] = -self._penalty if hit else 0.0
        shaped = {}
        for agent, part in parts.items():
            base = part["difference"] if spec.difference else part[ENV_REWARD]
            shaped[agent] = (
                base
                + part.get("shaping", 0.0)
                + part.get("coordination", 0.0)
                + part.get(SAFETY, 0.0)
            )
            part[TOTAL] = shaped[agent]
            self._accumulate(agent, part, infos.get(agent, {}))
        if terms.get("__all__") or truncs.get("__all__"):
            self._report(infos, list(parts))
        return obs, shaped, terms, truncs, infos

    def _add_shaping(self, parts: dict[str, dict[str, float]], terms: dict[str, bool]) -> None:
        shaping = self.spec_.shaping
        phi_next = self.inner.potential(shaping.potential)
        for agent, part in parts.items():
            terminated = bool(terms.get(agent, False) or terms.get("__all__", False))
            term = shaping_term(
                self._phi.get(agent, 0.0), phi_next[agent], shaping.gamma, terminated
            )
            part["shaping"] = shaping.weight * term
        self._phi = phi_next

    def _add_coordination(
        self, parts: dict[str, dict[str, float]], action_dict: dict[str, Any]
    ) -> None:
        acting = [agent for agent in action_dict if agent in parts]
        vectors = np.stack([action_vector(action_dict[a], self.action_spaces[a]) for a in acting])
        for agent, similarity in zip(acting, mean_cosine_similarity(vectors)):
            parts[agent]["coordination"] = self._bonus * float(similarity)

    def _accumulate(self, agent: str, part: dict[str, float], info: dict[str, Any]) -> None:
        totals = self._totals.setdefault(agent, defaultdict(float))
        for name, value in part.items():
            totals[name] += value
        for name, value in info.get("reward_components", {}).items():
            totals[name] += value

    def _report(self, infos: dict[str, dict[str, Any]], agents: list[str]) -> None:
        """Put the episode's per-agent mean of every reward part in the last infos."""
        count = len(self._totals)
        summary: defaultdict[str, float] = defaultdict(float)
        for totals in self._totals.values():
            for name, value in totals.items():
                summary[name] += value / count
        for agent in list(infos) or agents:
            info = infos.setdefault(agent, {})
            info[EPISODE_INFO] = dict(summary)
            info[TASK_INFO] = self._level


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
        from rl_platform.monitoring import EpisodeWindow

        self._window = EpisodeWindow()

    def on_episode_end(self, *, episode, env_runner=None, metrics_logger=None, **kwargs):  # noqa: D102
        info = episode_summary(episode)
        if info is None or metrics_logger is None:
            return
        for name, value in info[EPISODE_INFO].items():
            self._window.add(("rewards", name), value)

    def on_sample_end(self, *, env_runner=None, metrics_logger=None, **kwargs):  # noqa: D102
        from rl_platform.monitoring import smoothing_window

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
