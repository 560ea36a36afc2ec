"""Hierarchical control: a meta-controller picks each agent's strategy every K steps.

The experiment's ``hierarchy:`` section (:class:`~rl_platform.config.HierarchySpec`)
turns the env's agents into meta-controllers. Every ``every`` (K) base steps each agent
chooses one of the env's strategies (``BatchedCore.strategies``: parameterized option
policies over observations, e.g. trading's aggressive, conservative, balanced,
contrarian and momentum); the chosen strategy's rule then acts for that agent for the
next K base steps (``low_level: strategies``). RLlib trains the meta-controllers like
any other agents (PPO, IPPO, MAPPO; shared or per-agent modules):

* observation: the base observation plus the one-hot of the strategy in force (zeros
  before the first choice);
* action: ``Discrete(len(strategies))``;
* reward: the sum of the K base rewards (the experiment's reward engineering applied
  to each: :class:`HierarchicalEnv` wraps :class:`~rl_platform.rewards.RewardEnv`). A
  meta step is a semi-MDP step of K base steps, so its discount should be the base
  discount to the power K (gamma 0.99 per base step = 0.904 per meta step at K = 10):
  set ``algorithm.hyperparams.gamma`` for meta steps. An episode that ends inside a
  K-step block ends the meta step with the rewards summed so far.

Each episode reports, in its last infos, the share of the agents' choices that went
to each strategy; :class:`StrategyMetricsCallback` logs them as
``env_runners/strategy_share/<name>`` so a run shows what the meta-controller learned.

Not supported (refused by :func:`check`): ``low_level: learned`` (a trained low-level
policy conditioned on the strategy), the batched sampler (it steps the env core
directly, below this wrapper), in-training evaluation (``evaluation.every``: it plays
base actions) and algorithms other than PPO, IPPO and MAPPO.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.env.multi_agent_env import MultiAgentEnv

if TYPE_CHECKING:
    from rl_platform.config import ExperimentConfig, HierarchySpec

ALGORITHMS = ("ppo", "ippo", "mappo")  # on-policy; the replay ones need fixed module spaces
SHARE_INFO = "strategy_share"  # in the last infos: strategy -> share of the episode's choices
STRATEGY_INFO = "strategy"  # in every infos: the agent's strategy in force
CONFIG_KEY = "hierarchy"  # the env config's key holding the HierarchySpec as a dict


def strategy_names(spec: HierarchySpec, env_cls: type) -> list[str]:
    """The strategies offered to the meta-controller, in action-index order."""
    return list(spec.strategies) if spec.strategies else list(env_cls.strategies)


def check(experiment: ExperimentConfig, env_cls: type) -> None:
    """Raise ValueError when the experiment's ``hierarchy`` cannot run on this env/algorithm."""
    spec = experiment.hierarchy
    declared = tuple(getattr(env_cls, "strategies", ()))
    if not declared:
        raise ValueError(
            f"env {experiment.env.id!r} declares no strategies for a meta-controller to "
            "choose from (BatchedCore.strategies); the trading env does"
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
    if spec.low_level != "strategies":
        raise ValueError(
            f"low_level: {spec.low_level!r} is not supported yet; use low_level: strategies "
            "(the env's parameterized strategy policies act under the choice)"
        )
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

        from rl_platform.config import HierarchySpec
        from rl_platform.rewards import RewardEnv

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

    def step(self, action_dict: dict[str, Any]):  # noqa: D102
        for agent, action in action_dict.items():
            index = int(action)
            if not 0 <= index < len(self.names):
                raise ValueError(
                    f"agent {agent}: strategy index {action!r} out of range "
                    f"0..{len(self.names) - 1}"
                )
            self._choice[agent] = index
            self._counts[self.names[index]] += 1
        totals = dict.fromkeys(self._obs, 0.0)
        for _ in range(self.hierarchy.every):
            choices = {a: self.names[self._choice[a]] for a in self._obs}
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
            chosen = sum(self._counts.values()) or 1
            share = {name: self._counts[name] / chosen for name in self.names}
            for info in infos.values():
                info[SHARE_INFO] = share
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
