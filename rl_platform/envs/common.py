"""What a core and its views share: the config model, the step result, the agent ids.

Also the action validation the views apply before a core sees actions, and the numeric
helpers (``clip``, ``poisson``) of the cores' hot paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import ConfigDict, Field

from rl_platform.yaml_model import YamlModel

# ``clip(x, low, high[, out])``: numpy's clip ufunc itself, for the hot paths of env steps
# (np.clip's argument handling costs 3x the ufunc on the tiny arrays of a B=1 step).
try:
    from numpy._core.umath import clip
except ImportError:  # pragma: no cover (numpy < 2)
    clip = np.clip


def poisson(rng: np.random.Generator, lam: np.ndarray) -> np.ndarray | float:
    """``rng.poisson(lam)`` as float32: the same draws, a plain number for one element.

    Generator.poisson on a one-element array costs ~10x its scalar call.
    """
    if lam.size == 1:
        return float(rng.poisson(lam.item()))
    return rng.poisson(lam).astype(np.float32)


class CoreEnvConfig(YamlModel):
    """Options every env accepts; each env's config model extends it."""

    model_config = ConfigDict(extra="forbid")

    reward_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Reward component -> weight; set from the experiment's `rewards.weights`.",
    )
    team_reward: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of each agent's reward replaced by the agents' mean (`rewards.team`).",
    )


@dataclass
class StepResult:
    """What one batched step returns; arrays are indexed (copy, agent).

    A core whose components come out of one array may pass it as ``stacked`` (K, B, N),
    in ``components`` order; the views then read per-agent values in one call.
    """

    rewards: np.ndarray  # (B, N) float32, the weighted sum of the components
    components: dict[str, np.ndarray]  # name -> (B, N), unweighted
    terminated: np.ndarray  # (B,) bool: the task ended (no bootstrapping)
    truncated: np.ndarray  # (B,) bool: a time limit was hit
    stacked: np.ndarray | None = None

    def agent_components(self, copy: int) -> list[list[float]]:
        """Per agent of copy `copy`, its component values in ``components`` order."""
        if self.stacked is not None:
            return self.stacked[:, copy].T.tolist()
        return [list(row) for row in zip(*(v[copy].tolist() for v in self.components.values()))]


def agent_ids(num_agents: int) -> list[str]:
    """The platform's agent naming: agent_0 ... agent_{N-1}."""
    return [f"agent_{i}" for i in range(num_agents)]


def validate_actions(actions: dict[str, Any], agents: list[str], space: gym.Space) -> np.ndarray:
    """Stack per-agent actions into (1, N, *shape), refusing what cannot be an action.

    Missing or unknown agent ids, wrong shapes, NaN/inf values and discrete indices out of
    range raise ValueError naming the agent. Continuous values outside the Box pass (the
    core clips them).
    """
    try:
        values = [actions[a] for a in agents]
    except KeyError:
        missing = [a for a in agents if a not in actions]
        raise ValueError(f"no action for agent(s) {', '.join(missing)}") from None
    if len(actions) != len(agents):
        unknown = [str(a) for a in actions if a not in set(agents)]
        raise ValueError(f"unknown agent id(s) {', '.join(unknown)}; agents are {agents}")
    discrete = isinstance(space, gym.spaces.Discrete)
    try:
        stacked = np.asarray(values, dtype=np.float64 if discrete else np.float32)
    except (TypeError, ValueError):
        stacked = None
    expected = (len(agents),) if discrete else (len(agents), *space.shape)
    if stacked is None or stacked.shape != expected:
        for agent, value in zip(agents, values, strict=True):
            shape = np.shape(value)
            if shape != (() if discrete else space.shape):
                raise ValueError(
                    f"agent {agent}: action of shape {shape}, expected {space.shape}"
                ) from None
        raise ValueError(f"actions {values!r} are not numbers")
    if not np.isfinite(stacked).all():
        finite = np.isfinite(stacked).reshape(len(agents), -1).all(axis=1)
        agent = agents[int(np.argmin(finite))]
        raise ValueError(f"agent {agent}: action {actions[agent]!r} is not finite")
    if discrete:
        index = stacked.astype(np.int64)
        bad = (index != stacked) | (index < 0) | (index >= space.n)
        if bad.any():
            agent = agents[int(np.argmax(bad))]
            raise ValueError(
                f"agent {agent}: action {actions[agent]!r} out of range, "
                f"expected an integer in 0..{space.n - 1}"
            )
        return index[None]
    return stacked[None]


class ForeignEnvConfig(YamlModel):
    """The config of a view around someone else's env (PettingZoo, your MultiAgentEnv).

    ``source`` names the env; every other key goes to it (:attr:`kwargs`). Such envs have
    one reward of their own: ``reward_weights`` stays empty, ``team_reward`` mixes it.
    """

    model_config = ConfigDict(extra="allow")

    source: str
    reward_weights: dict[str, float] = Field(
        default_factory=dict, description="These envs have no reward components."
    )
    team_reward: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of each reward replaced by the mean."
    )

    @property
    def kwargs(self) -> dict[str, Any]:
        """The env's own arguments."""
        return dict(self.model_extra or {})


def share_team_reward(rewards: dict[str, Any], share: float) -> dict[str, float]:
    """Each agent's reward as a float, a `share` of it replaced by the agents' mean."""
    rewards = {a: float(r) for a, r in rewards.items()}
    if share and rewards:
        team = sum(rewards.values()) / len(rewards)
        rewards = {a: r + share * (team - r) for a, r in rewards.items()}
    return rewards


def checked_action(agent: str, space: gym.Space, value: Any) -> Any:
    """One agent's action for a foreign env: finite, a Box one clipped, a Discrete one an int.

    Raises:
        ValueError: NaN or inf, or a discrete action that is no index of the space.
    """
    array = np.asarray(value)
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise ValueError(f"agent {agent}: action {value!r} is not finite")
    if isinstance(space, gym.spaces.Box):
        return np.clip(array, space.low, space.high).astype(space.dtype)
    if isinstance(space, gym.spaces.Discrete):
        index = int(array) if array.size == 1 else None
        if index is None or index != array.reshape(()) or not space.contains(np.int64(index)):
            raise ValueError(f"agent {agent}: action {value!r} is not in {space}")
        return index
    return value


def action_names(env_id: str, env_config: dict[str, Any]) -> list[str] | None:
    """The action names env `env_id` declares with `env_config`, if any.

    A name list on the env class or its core class, else the ``action_names`` of its core
    built with `env_config` (names can depend on it: discrete or continuous, how many
    targets). None when the env or its names are missing (a plot then says ``a<k>``).
    """
    from rl_platform.registry import get_env

    try:
        entry = get_env(env_id)
        env_cls = entry.load() if entry is not None else None
        core_cls = getattr(env_cls, "core_cls", None)
        for owner in (env_cls, core_cls):
            names = getattr(owner, "action_names", None)
            if isinstance(names, list | tuple) and names:
                return [str(n) for n in names]
        model = getattr(env_cls, "config_model", None)
        if core_cls is None or model is None:
            return None
        core = core_cls(model.model_validate({**env_config, **entry.bound_config}), 1)
        names = core.action_names
        getattr(core, "close", lambda: None)()
    except Exception:  # noqa: BLE001 - plots draw without names rather than fail
        return None
    return [str(n) for n in names] if names else None
