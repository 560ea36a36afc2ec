"""A user's own RLlib ``MultiAgentEnv`` (``env.id: <module>:<Class>``) with the platform's view.

Only trusted modules are imported (:func:`rl_platform.trust.check_env_class`), and the
class must subclass ``ray.rllib.env.MultiAgentEnv``. :class:`CustomMultiAgentEnv` builds
it with ``env.config`` and adds what the platform's algorithms read: a global state
(the env's ``state()`` when it has one and a ``state_space``, else every agent's latest
observation joined) and the team-reward share. No batched core: the stock runner samples.
How to write one: docs/custom-envs.md ("Bring your own MultiAgentEnv").
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from pydantic import Field
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rl_platform.envs.common import ForeignEnvConfig, checked_action, share_team_reward
from rl_platform.trust import check_env_class


class CustomEnvConfig(ForeignEnvConfig):
    """``source`` names the class; every other key goes to its constructor's config dict."""

    source: str = Field(description="<module>:<Class>")


def load_env_class(source: str) -> type[MultiAgentEnv]:
    """The ``MultiAgentEnv`` subclass `source` (``<module>:<Class>``) names, if trusted.

    Raises:
        UntrustedModuleError: the module is not trusted (nothing imported).
        ValueError: the module cannot be imported, has no such class, or the class is
            not a ``MultiAgentEnv`` subclass.
    """
    module_name, name = check_env_class(source)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"{source!r}: cannot import {module_name!r}: {err} (is its folder on "
            "PYTHONPATH, or the current directory?)"
        ) from None
    cls = getattr(module, name, None)
    if cls is None:
        raise ValueError(f"{source!r}: module {module_name!r} has no attribute {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, MultiAgentEnv)):
        what = "a class" if isinstance(cls, type) else f"a {type(cls).__name__}"
        raise ValueError(
            f"{source!r}: {name} is {what} but not a subclass of ray.rllib.env.MultiAgentEnv "
            "(a PettingZoo env is named pettingzoo:<module>:<factory>)"
        )
    return cls


class CustomMultiAgentEnv(MultiAgentEnv):
    """The platform's view of a user's ``MultiAgentEnv`` (see the module docstring)."""

    config_model: ClassVar[type[ForeignEnvConfig]] = CustomEnvConfig
    reward_components: ClassVar[tuple[str, ...]] = ()
    task_levels: ClassVar[tuple[str, ...]] = ()
    baselines: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.env_config = CustomEnvConfig.model_validate(dict(config or {}))
        source = self.env_config.source
        self.inner = load_env_class(source)(self.env_config.kwargs)
        self.possible_agents = list(self.inner.possible_agents or [])
        if not self.possible_agents:
            raise ValueError(f"{source!r}: the env sets no possible_agents in its constructor")
        self.agents = list(self.possible_agents)
        self.observation_spaces = {
            a: self.inner.get_observation_space(a) for a in self.possible_agents
        }
        self.action_spaces = {a: self.inner.get_action_space(a) for a in self.possible_agents}
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        own_state = getattr(self.inner, "state_space", None)
        self._own_state = isinstance(own_state, gym.Space) and callable(
            getattr(self.inner, "state", None)
        )
        self._raw = {
            a: s["observations"] if _masked(s) else s for a, s in self.observation_spaces.items()
        }
        if self._own_state:
            self.state_space = own_state
        else:
            size = sum(gym.spaces.flatdim(s) for s in self._raw.values())
            self.state_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self._latest: dict[str, np.ndarray] = {}
        self._episode_over = True

    @classmethod
    def probe_config(cls, config: dict[str, Any]) -> None:
        """Build the env once so a bad source or config fails at config time."""
        cls(config).close()

    def _remember(self, obs: dict[str, Any]) -> None:
        for agent, value in obs.items():
            raw = value["observations"] if _masked(self.observation_spaces[agent]) else value
            self._latest[agent] = gym.spaces.flatten(self._raw[agent], raw)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: D102
        obs, infos = self.inner.reset(seed=seed, options=options)
        self.agents = list(getattr(self.inner, "agents", None) or obs)
        self._latest = {}
        self._episode_over = False
        self._remember(obs)
        return obs, infos

    def step(self, action_dict: dict[str, Any]):  # noqa: D102
        if self._episode_over:
            raise RuntimeError("step() after the end of the episode: call reset() first")
        unknown = [a for a in action_dict if a not in self.action_spaces]
        if unknown:
            raise ValueError(
                f"actions for unknown agent(s) {', '.join(map(str, unknown))}; the env's "
                f"agents: {', '.join(self.possible_agents)}"
            )
        actions = {a: checked_action(a, self.action_spaces[a], v) for a, v in action_dict.items()}
        obs, rewards, terms, truncs, infos = self.inner.step(actions)
        self.agents = list(getattr(self.inner, "agents", None) or obs)
        self._remember(obs)
        terms = {"__all__": False, **terms}
        truncs = {"__all__": False, **truncs}
        self._episode_over = bool(terms["__all__"] or truncs["__all__"])
        rewards = share_team_reward(rewards, self.env_config.team_reward)
        return obs, rewards, terms, truncs, infos

    def state(self) -> np.ndarray:
        """The env's global state, or every agent's latest observation joined."""
        if self._own_state:
            return np.asarray(self.inner.state(), dtype=np.float32)
        parts = [
            self._latest.get(a, np.zeros(gym.spaces.flatdim(s), np.float32))
            for a, s in self._raw.items()
        ]
        return np.concatenate(parts).astype(np.float32)

    def close(self) -> None:  # noqa: D102
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


def _masked(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Dict) and "action_mask" in space.spaces
