"""Score an env's hand-written baselines and a random policy, episodes run as one batch.

The batched core runs `episodes` copies at once, so 20 episodes of a baseline cost about
as much as one. A copy's score is its mean per-agent return over its first episode.
Envs without a batched core (the PettingZoo adapter) are played episode by episode on
their RLlib view (:func:`view_episode_scores`); they have no baselines, only random.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rl_platform import registry

RANDOM = "random"


def episode_scores(
    env_id: str,
    policy: str,
    config: dict[str, Any] | None = None,
    episodes: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """Mean per-agent episode return of `policy` (a baseline name or "random"), per episode.

    Returns:
        (episodes,) float64, one score per episode (one env copy each).
    """
    entry = registry.get_env(env_id)
    env_cls = entry.load()
    action_rng = np.random.default_rng(seed + 1)
    merged = {**(config or {}), **entry.bound_config}
    if not runs_on_core(env_cls, merged):
        if policy != RANDOM:
            raise ValueError(f"{env_id!r} has no baseline {policy!r}; only {RANDOM!r}")
        env = env_cls(merged)
        space = env.action_spaces[env.possible_agents[0]]

        def act_randomly(obs: np.ndarray) -> np.ndarray:
            return random_actions(space, obs.shape[:2], action_rng)

        return view_episode_scores(env, act_randomly, episodes, seed)
    core = env_cls.core_cls(env_cls.config_model.model_validate(merged), episodes)
    lead = (episodes, core.num_agents)

    def act(obs: np.ndarray) -> np.ndarray:
        if policy == RANDOM:
            return random_actions(core.action_space, lead, action_rng)
        return core.baseline_actions(policy, obs)

    return core.play_episodes(act, np.random.default_rng(seed))


def runs_on_core(env_cls: type, config: dict[str, Any]) -> bool:
    """Whether `env_cls` has a batched core that can run `config` (its ``batched_reason``)."""
    if not hasattr(env_cls, "core_cls"):
        return False
    batched_reason = getattr(env_cls, "batched_reason", None)
    return batched_reason is None or batched_reason(config) is None


def view_episode_scores(
    env: Any,
    act: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    seed: int = 0,
    reset: Callable[[], None] | None = None,
) -> np.ndarray:
    """Mean per-agent episode return of ``act`` on an RLlib ``MultiAgentEnv``, per episode.

    ``act`` maps observations (1, N, obs_dim), all possible agents in order (zeros for
    agents absent this step), to actions (1, N, ...); absent agents' actions are dropped.
    Episode k is reset with seed ``seed + k``. Observations must be arrays (envs with
    action masks need a mask-aware policy). ``reset`` (if given) is called before each
    episode, e.g. to clear a recurrent policy's state.
    """
    agents = list(env.possible_agents)
    scores = np.zeros(episodes)
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        if reset is not None:
            reset()
        blank = {a: np.zeros(env.observation_spaces[a].shape, np.float32) for a in agents}
        done = False
        while not done:
            if any(isinstance(o, dict) for o in obs.values()):
                raise ValueError("observations with action masks need a mask-aware policy")
            stacked = np.stack([obs.get(a, blank[a]) for a in agents])[None]
            actions = act(stacked)[0]
            obs, rewards, terms, truncs, _ = env.step(
                {a: actions[i] for i, a in enumerate(agents) if a in obs}
            )
            scores[k] += sum(rewards.values()) / len(agents)
            done = terms["__all__"] or truncs["__all__"]
    return scores


def random_actions(space: gym.Space, lead: tuple[int, ...], rng: np.random.Generator):
    """Uniform random actions of shape ``lead + space.shape``."""
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=lead)
    return rng.uniform(space.low, space.high, size=(*lead, *space.shape)).astype(space.dtype)


def baseline_table(
    env_id: str, config: dict[str, Any] | None = None, episodes: int = 20, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Mean score of random and of every baseline at every task level: {level: {policy: score}}."""
    env_cls = registry.get_env(env_id).load()
    table: dict[str, dict[str, float]] = {}
    for level in env_cls.task_levels:
        level_config = {**(config or {}), "task": level}
        table[level] = {
            name: float(episode_scores(env_id, name, level_config, episodes, seed).mean())
            for name in (RANDOM, *env_cls.baselines)
        }
    return table
