"""Any PettingZoo env as an RLlib ``MultiAgentEnv``, with no user code.

Named ``env.id: pettingzoo:<module>:<factory>`` (e.g.
``pettingzoo:mpe2.simple_spread_v3:parallel_env``); only allow-listed or trusted modules
are imported (:func:`rl_platform.trust.check_env_factory`). :class:`PettingZooEnv` is
the adapter; what it adds (AEC conversion, leaving agents, action masks, a global state,
bad input): docs/custom-envs.md ("A PettingZoo env").
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rl_platform.trust import check_env_factory
from rl_platform.yaml_model import YamlModel

PREFIX = "pettingzoo:"


class PettingZooConfig(YamlModel):
    """``source`` names the env; every other key is a keyword argument of its factory."""

    model_config = ConfigDict(extra="allow")

    source: str = Field(description="pettingzoo:<module>:<factory>")
    reward_weights: dict[str, float] = Field(
        default_factory=dict, description="PettingZoo envs have no reward components."
    )
    team_reward: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of each reward replaced by the mean."
    )

    @field_validator("source")
    @classmethod
    def _allowed(cls, source: str) -> str:
        check_env_factory(source, PREFIX)
        return source

    @property
    def kwargs(self) -> dict[str, Any]:
        """The factory's keyword arguments."""
        return dict(self.model_extra or {})


def load_factory(source: str) -> Any:
    """The factory `source` (``pettingzoo:<module>:<factory>``) names, if allow-listed.

    Raises:
        UntrustedModuleError: the module or factory is not allowed (nothing imported).
        ValueError: the module cannot be imported or has no such callable.
    """
    module_name, name = check_env_factory(source, PREFIX)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{source!r}: cannot import {module_name!r}: {err}") from None
    factory = getattr(module, name, None)
    if factory is None:
        raise ValueError(f"{source!r}: {module_name!r} has no attribute {name!r}")
    if not callable(factory):
        raise ValueError(f"{source!r}: {name!r} is not callable")
    return factory


def make_parallel_env(source: str, kwargs: dict[str, Any]) -> Any:
    """Build the PettingZoo env and return it as a ``ParallelEnv``.

    Raises:
        ValueError: the factory returned something other than a PettingZoo env, or an
            AEC env PettingZoo cannot make parallel.
    """
    from pettingzoo import AECEnv, ParallelEnv
    from pettingzoo.utils.conversions import aec_to_parallel

    env = load_factory(source)(**kwargs)
    if isinstance(env, ParallelEnv):
        return env
    if isinstance(env, AECEnv):
        if not env.metadata.get("is_parallelizable", False):
            raise ValueError(
                f"{source!r} is a turn-based AEC env that PettingZoo cannot convert to a "
                "parallel env (metadata is_parallelizable is not true)"
            )
        return aec_to_parallel(env)
    raise ValueError(
        f"{source!r} built a {type(env).__name__}, not a PettingZoo env (expected a "
        "pettingzoo.ParallelEnv or pettingzoo.AECEnv)"
    )


def _has_mask(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Dict) and "action_mask" in space.spaces


class PettingZooEnv(MultiAgentEnv):
    """RLlib view of a PettingZoo parallel env (see the module docstring)."""

    config_model: ClassVar[type[BaseModel]] = PettingZooConfig
    reward_components: ClassVar[tuple[str, ...]] = ()
    task_levels: ClassVar[tuple[str, ...]] = ()
    baselines: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.env_config = PettingZooConfig.model_validate(dict(config or {}))
        self.par_env = make_parallel_env(self.env_config.source, self.env_config.kwargs)
        self.possible_agents = list(self.par_env.possible_agents)
        self.agents = list(self.possible_agents)
        raw_spaces = {a: self.par_env.observation_space(a) for a in self.possible_agents}
        self._masked = {a: _has_mask(s) for a, s in raw_spaces.items()}
        self.observation_spaces = {
            a: self._convert_space(s) if self._masked[a] else s for a, s in raw_spaces.items()
        }
        self.action_spaces = {a: self.par_env.action_space(a) for a in self.possible_agents}
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        own_state = getattr(self.par_env, "state_space", None)
        self._own_state = isinstance(own_state, gym.Space) and callable(
            getattr(self.par_env, "state", None)
        )
        self._raw_obs = {
            a: s.spaces["observation"] if self._masked[a] else s for a, s in raw_spaces.items()
        }
        self._flat_spaces = {a: gym.spaces.flatten_space(s) for a, s in self._raw_obs.items()}
        if self._own_state:
            self.state_space = own_state
        else:
            size = sum(s.shape[0] for s in self._flat_spaces.values())
            self.state_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self._latest: dict[str, np.ndarray] = {}
        self._episode_over = True

    @classmethod
    def probe_config(cls, config: dict[str, Any]) -> None:
        """Build the env once so a bad source or bad kwargs fail at config time."""
        cls(config).close()

    @staticmethod
    def _convert_space(space: gym.spaces.Dict) -> gym.spaces.Dict:
        return gym.spaces.Dict(
            {
                "observations": space.spaces["observation"],
                "action_mask": space.spaces["action_mask"],
            }
        )

    def _convert_obs(self, obs: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for agent, value in obs.items():
            raw = value["observation"] if self._masked[agent] else value
            self._latest[agent] = gym.spaces.flatten(self._raw_obs[agent], raw)
            out[agent] = (
                {"observations": raw, "action_mask": value["action_mask"]}
                if self._masked[agent]
                else value
            )
        return out

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: D102
        obs, infos = self.par_env.reset(seed=seed, options=options)
        self.agents = list(self.par_env.agents)
        self._latest = {}
        self._episode_over = False
        return self._convert_obs(obs), {a: infos.get(a, {}) for a in obs}

    def step(self, action_dict: dict[str, Any]):  # noqa: D102
        if self._episode_over:
            raise RuntimeError("step() after the episode ended; call reset() first")
        live = set(self.par_env.agents)
        unknown = [str(a) for a in action_dict if a not in live]
        if unknown:
            raise ValueError(f"unknown or departed agent id(s) {', '.join(unknown)}")
        actions = {a: self._check_action(a, v) for a, v in action_dict.items()}
        obs, rewards, terms, truncs, infos = self.par_env.step(actions)
        self.agents = list(self.par_env.agents)
        done_all = not self.agents or all(terms.get(a, False) or truncs.get(a, False) for a in obs)
        terminateds = dict(terms)
        truncateds = dict(truncs)
        terminateds["__all__"] = done_all and all(terms.get(a, False) for a in terms)
        truncateds["__all__"] = done_all and not terminateds["__all__"]
        self._episode_over = done_all
        rewards = {a: float(r) for a, r in rewards.items()}
        share = self.env_config.team_reward
        if share and rewards:
            team = sum(rewards.values()) / len(rewards)
            rewards = {a: r + share * (team - r) for a, r in rewards.items()}
        return self._convert_obs(obs), rewards, terminateds, truncateds, infos

    def _check_action(self, agent: str, value: Any) -> Any:
        space = self.action_spaces[agent]
        array = np.asarray(value)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise ValueError(f"agent {agent}: action {value!r} is not finite")
        if isinstance(space, gym.spaces.Box):
            return np.clip(array, space.low, space.high).astype(space.dtype)
        if isinstance(space, gym.spaces.Discrete) and not space.contains(
            np.int64(array) if array.size == 1 else array
        ):
            raise ValueError(f"agent {agent}: action {value!r} is not in {space}")
        return int(array) if isinstance(space, gym.spaces.Discrete) else value

    def state(self) -> np.ndarray:
        """The env's global state, or every agent's latest observation joined."""
        if self._own_state:
            return self.par_env.state()
        parts = [
            self._latest.get(a, np.zeros(s.shape, np.float32)) for a, s in self._flat_spaces.items()
        ]
        return np.concatenate(parts).astype(np.float32)

    def close(self) -> None:  # noqa: D102
        self.par_env.close()
