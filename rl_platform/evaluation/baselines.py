"""Score an env's hand-written baselines and a random policy, episodes run as one batch.

The batched core runs `episodes` copies at once, so 20 episodes of a baseline cost about
as much as one. A copy's score is its mean per-agent return over its first episode.
"""

from __future__ import annotations

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
    env_cls = registry.get_env(env_id).load()
    core = env_cls.core_cls(env_cls.config_model.model_validate(config or {}), episodes)
    action_rng = np.random.default_rng(seed + 1)
    lead = (episodes, core.num_agents)

    def act(obs: np.ndarray) -> np.ndarray:
        if policy == RANDOM:
            return _random_actions(core.action_space, lead, action_rng)
        return core.baseline_actions(policy, obs)

    return core.play_episodes(act, np.random.default_rng(seed))


def _random_actions(space: gym.Space, lead: tuple[int, ...], rng: np.random.Generator):
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
