"""Any PettingZoo env as an RLlib ``MultiAgentEnv``, with no user code.

Named ``env.id: pettingzoo:<module>:<factory>`` (e.g.
``pettingzoo:mpe2.simple_spread_v3:parallel_env``); only allow-listed or trusted modules
are imported (:func:`rl_platform.trust.check_env_factory`). :class:`PettingZooEnv` is
the adapter; what it adds (AEC conversion, leaving agents, action masks, a global state,
bad input): docs/custom-envs.md ("A PettingZoo env"). :class:`ParallelEnvCore` steps B
copies of the env as one batched core (the batched sampler's and the evaluation's).
A turn-based AEC env (not parallelizable: tictactoe, connect four) is built as a
:class:`~rl_platform.envs.turn_based.TurnBasedEnv` instead (docs/custom-envs.md,
"Turn-based envs").
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, Field, field_validator
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rl_platform.envs.base import BatchedCore, ForeignCore, StepResult
from rl_platform.envs.common import ForeignEnvConfig, checked_action, share_team_reward
from rl_platform.envs.turn_based import TurnBasedEnv, is_turn_based
from rl_platform.registry import ENV_PACKAGE_EXTRAS, install_hint
from rl_platform.trust import check_env_factory

PREFIX = "pettingzoo:"


class PettingZooConfig(ForeignEnvConfig):
    """``source`` names the env; every other key is a keyword argument of its factory."""

    source: str = Field(description="pettingzoo:<module>:<factory>")

    @field_validator("source")
    @classmethod
    def _allowed(cls, source: str) -> str:
        check_env_factory(source, PREFIX)
        return source


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
        missing = (err.name or "").partition(".")[0]
        if missing in ENV_PACKAGE_EXTRAS and module_name.partition(".")[0] == missing:
            raise ValueError(
                f"{source!r}: the {missing} package is not installed: "
                f"{install_hint(ENV_PACKAGE_EXTRAS[missing])}"
            ) from None
        raise ValueError(f"{source!r}: cannot import {module_name!r}: {err}") from None
    factory = getattr(module, name, None)
    if factory is None:
        raise ValueError(f"{source!r}: {module_name!r} has no attribute {name!r}")
    if not callable(factory):
        raise ValueError(f"{source!r}: {name!r} is not callable")
    return factory


class TurnBasedEnvError(ValueError):
    """The factory built a turn-based AEC env: :class:`TurnBasedEnv` runs it, not a parallel env."""


def make_parallel_env(source: str, kwargs: dict[str, Any]) -> Any:
    """Build the PettingZoo env and return it as a ``ParallelEnv``.

    Raises:
        TurnBasedEnvError: an AEC env PettingZoo cannot make parallel (turn-based).
        ValueError: the factory returned something other than a PettingZoo env.
    """
    return as_parallel(load_factory(source)(**kwargs), source)


def as_parallel(env: Any, source: str) -> Any:
    """`env` (what `source`'s factory built) as a ``ParallelEnv``; see :func:`make_parallel_env`."""
    from pettingzoo import AECEnv, ParallelEnv
    from pettingzoo.utils.conversions import aec_to_parallel

    if isinstance(env, ParallelEnv):
        return env
    if is_turn_based(env):
        raise TurnBasedEnvError(
            f"{source!r} is a turn-based AEC env that PettingZoo cannot convert to a "
            "parallel env (metadata is_parallelizable is not true)"
        )
    if isinstance(env, AECEnv):
        return aec_to_parallel(env)
    raise ValueError(
        f"{source!r} built a {type(env).__name__}, not a PettingZoo env (expected a "
        "pettingzoo.ParallelEnv or pettingzoo.AECEnv)"
    )


def _has_mask(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Dict) and "action_mask" in space.spaces


def info_masked_agents(par_env: Any) -> list[str]:
    """Agents whose ``infos[agent]["action_mask"]`` is their action mask (PettingZoo's other way).

    Probed by one ``reset()`` (no seed) of `par_env`, only for agents with Discrete actions
    and no mask in their observation.
    """
    agents = [
        a
        for a in par_env.possible_agents
        if not _has_mask(par_env.observation_space(a))
        and isinstance(par_env.action_space(a), gym.spaces.Discrete)
    ]
    if not agents:
        return []
    _, infos = par_env.reset()
    infos = infos or {}
    return [a for a in agents if isinstance(infos.get(a), dict) and "action_mask" in infos[a]]


def info_mask_space(action_space: gym.spaces.Discrete) -> gym.spaces.Box:
    """The ``action_mask`` space declared for an infos mask: int8 0/1, one per action."""
    return gym.spaces.Box(0, 1, (int(action_space.n),), np.int8)


def _describe(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Box):
        return f"Box{space.shape}"
    if isinstance(space, gym.spaces.Discrete):
        return f"Discrete({space.n})"
    return type(space).__name__


def _mask_length(space: gym.Space) -> int | None:
    """The length of an observation's flat ``action_mask`` (None: not a flat one)."""
    shape = space.spaces["action_mask"].shape
    return int(shape[0]) if shape is not None and len(shape) == 1 else None


def core_reason(par_env: Any) -> str | None:
    """Why :class:`ParallelEnvCore` cannot step `par_env`, in one line, or None when it can."""
    agents = list(par_env.possible_agents)
    if not agents:
        return "the env has no possible_agents"
    obs = {a: par_env.observation_space(a) for a in agents}
    act = {a: par_env.action_space(a) for a in agents}
    for kind, spaces in (("observation", obs), ("action", act)):
        first = spaces[agents[0]]
        other = next((a for a in agents if spaces[a] != first), None)
        if other is not None:
            return (
                f"agents' {kind} spaces differ ({agents[0]} {_describe(first)}, "
                f"{other} {_describe(spaces[other])}); the batched core needs one space"
            )
    space = act[agents[0]]
    masked = _has_mask(obs[agents[0]])
    if masked:
        if set(obs[agents[0]].spaces) != {"observation", "action_mask"}:
            return "a masked observation must be a Dict of 'observation' and 'action_mask'"
        length = _mask_length(obs[agents[0]])
        if not isinstance(space, gym.spaces.Discrete) or length != space.n:
            return (
                f"the action mask ({_describe(obs[agents[0]]['action_mask'])}) must be flat, "
                f"one entry per action of a Discrete space (actions: {_describe(space)})"
            )
        obs = {a: s.spaces["observation"] for a, s in obs.items()}
    else:
        info = info_masked_agents(par_env)
        if info and len(info) != len(agents):
            return "only some agents' infos carry action masks; the batched core needs all or none"
    if not isinstance(obs[agents[0]], gym.spaces.Box):
        return f"observations are {_describe(obs[agents[0]])}; the batched core takes Box ones"
    if not isinstance(space, gym.spaces.Box | gym.spaces.Discrete):
        return f"actions are {_describe(space)}; the batched core takes Box or Discrete ones"
    if isinstance(space, gym.spaces.Discrete) and space.start != 0:
        return f"actions are Discrete({space.n}, start={space.start}); start must be 0"
    return None


class LeanParallelStep:
    """``step`` of PettingZoo's ``aec_to_parallel`` wrapper without its per-step waste.

    The same agent cycle as ``aec_to_parallel_wrapper.step`` (PettingZoo 1.27), on the
    AEC env under the order-enforcing and action-bounds wrappers, minus the
    ``last()`` call whose observation it discards: about a third of an MPE step. Those
    wrappers only check what the core guarantees (reset before step, discrete actions in
    range, Box actions clipped). Other parallel envs are stepped as they are.
    """

    _CHECKS = ("OrderEnforcingWrapper", "AssertOutOfBoundsWrapper", "ClipOutOfBoundsWrapper")

    def __init__(self, par_env: Any) -> None:
        self.par_env = par_env
        aec = par_env.aec_env
        while type(aec).__name__ in self._CHECKS and type(aec).__module__.startswith(
            "pettingzoo.utils.wrappers"
        ):
            aec = aec.env
        self.aec = aec

    @staticmethod
    def applies(par_env: Any) -> bool:
        """Whether `par_env` is PettingZoo's own ``aec_to_parallel`` wrapper."""
        from pettingzoo.utils.conversions import aec_to_parallel_wrapper

        return type(par_env) is aec_to_parallel_wrapper

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """One parallel step: every live agent acts once, in the AEC env's order."""
        aec = self.aec
        rewards: dict[str, float] = {}
        for agent in aec.agents:
            if agent != aec.agent_selection:
                raise AssertionError(
                    f"expected agent {agent} got agent {aec.agent_selection}: the parallel "
                    "wrapper expects agents to step in a cycle"
                )
            aec.step(actions[agent])
            step_rewards = aec.rewards
            for other in aec.agents:
                rewards[other] = rewards.get(other, 0) + step_rewards[other]
        terminations = dict(aec.terminations)
        truncations = dict(aec.truncations)
        infos = dict(aec.infos)
        observations = {agent: aec.observe(agent) for agent in aec.agents}
        while aec.agents and (
            aec.terminations[aec.agent_selection] or aec.truncations[aec.agent_selection]
        ):
            aec.step(None)
        self.par_env.agents = aec.agents
        return observations, rewards, terminations, truncations, infos


class ParallelEnvCore(ForeignCore):
    """B copies of a PettingZoo ``ParallelEnv`` stepped in one process, as arrays.

    Every agent shares one observation space (a Box, flattened to (D,)) and one Box or
    Discrete action space (:func:`core_reason`); action masks, in the observation or in
    the infos, are kept per step for :meth:`action_masks`. Observations, rewards and flags are
    written into preallocated (B, N, ...) buffers each step. An agent that leaves
    mid-episode is sent no action, gets reward 0 and observes zeros from the step after
    its last (:meth:`alive`); a copy's episode ends when all its agents are done. Each
    copy's reset is seeded from the generator passed to :meth:`reset`, so the same
    generator gives the same episodes. Rewards and the team share are the
    :class:`PettingZooEnv` view's.
    """

    def __init__(self, config: PettingZooConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        self.envs = [make_parallel_env(config.source, config.kwargs) for _ in range(batch_size)]
        self._steps = [
            LeanParallelStep(env).step if LeanParallelStep.applies(env) else env.step
            for env in self.envs
        ]
        first = self.envs[0]
        reason = core_reason(first)
        if reason is not None:
            raise ValueError(f"{config.source!r} cannot run as a batched core: {reason}")
        self.agents = list(first.possible_agents)
        self._raw_space = first.observation_space(self.agents[0])
        self.action_space = first.action_space(self.agents[0])
        # Where the masks are: "obs" (PettingZoo's Dict), "info" (infos[agent]), or None.
        self.mask_in = (
            "obs" if _has_mask(self._raw_space) else "info" if info_masked_agents(first) else None
        )
        if self.mask_in == "obs":
            self._raw_space = self._raw_space.spaces["observation"]
        self._flat = len(self._raw_space.shape) == 1  # written as they come, no flatten()
        self.observation_space = gym.spaces.flatten_space(self._raw_space)
        self._discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self.action_names = _declared_action_names(first, self.action_space)
        n, d = len(self.agents), self.observation_space.shape[0]
        self._masks = (
            None
            if self.mask_in is None
            else np.ones((batch_size, n, int(self.action_space.n)), dtype=np.float32)
        )
        own_state = getattr(first, "state_space", None)
        self._own_state = isinstance(own_state, gym.Space) and callable(
            getattr(first, "state", None)
        )
        if self._own_state:
            self.state_space = own_state
            self._state = np.zeros((batch_size, *own_state.shape), dtype=np.float32)
        else:
            self.state_space = gym.spaces.Box(-np.inf, np.inf, (n * d,), np.float32)
        self._latest = np.zeros((batch_size, n, d), dtype=np.float32)  # last seen, kept
        self._shown = np.ones((batch_size, n), dtype=bool)  # observed at the last step
        self._alive = np.ones((batch_size, n), dtype=bool)  # acting at the next step
        self._all_shown = True
        self._over = np.zeros(batch_size, dtype=bool)  # ended, not reset yet
        self._last_flags = np.zeros((2, batch_size), dtype=bool)
        self._rewards = np.zeros((batch_size, n), dtype=np.float32)
        self._zero = np.zeros(d, dtype=np.float32)

    @property
    def num_agents(self) -> int:  # noqa: D102
        return len(self.agents)

    def _write_obs(self, b: int, obs: dict[str, Any], infos: Any = None) -> bool:
        """Copy b's observation dict into the buffers; True when every agent observed."""
        if self._masks is not None:
            obs = self._write_masks(b, obs, infos)
        agents = self.agents
        if len(obs) == len(agents):
            try:
                rows = [obs[a] for a in agents]
            except KeyError:
                pass
            else:
                if self._flat:
                    self._latest[b] = rows
                else:
                    self._latest[b] = [gym.spaces.flatten(self._raw_space, o) for o in rows]
                self._shown[b] = True
                return True
        for n, agent in enumerate(agents):
            value = obs.get(agent)
            self._shown[b, n] = value is not None
            if value is not None:
                self._latest[b, n] = (
                    value if self._flat else gym.spaces.flatten(self._raw_space, value)
                )
        return False

    def _write_masks(self, b: int, obs: dict[str, Any], infos: Any) -> dict[str, Any]:
        """Copy b's action masks into their buffer (all ones where an agent sent none)."""
        masks = self._masks[b]
        masks[:] = 1.0
        if self.mask_in == "obs":
            for n, agent in enumerate(self.agents):
                value = obs.get(agent)
                if value is not None:
                    masks[n] = value["action_mask"]
            return {a: value["observation"] for a, value in obs.items()}
        infos = infos or {}
        for n, agent in enumerate(self.agents):
            info = infos.get(agent)
            mask = info.get("action_mask") if isinstance(info, dict) else None
            if mask is not None and agent in obs:
                masks[n] = mask
        return obs

    def action_masks(self) -> np.ndarray | None:
        """(B, N, n_actions) float32 0/1: the actions each agent may take next; None: no masks."""
        return self._masks

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:
        """Reset copies `mask` (all when None), each with a seed drawn from `rng` in copy order."""
        copies = range(self.batch_size) if mask is None else np.flatnonzero(mask).tolist()
        seeds = rng.integers(0, 2**31 - 1, size=len(copies)).tolist()
        full = set(self.agents)
        for b, seed in zip(copies, seeds):
            env = self.envs[b]
            obs, infos = env.reset(seed=seed)
            if set(env.agents) != full:
                raise ValueError(
                    "agents that join mid-episode need the stock sampler: reset gave "
                    f"{sorted(env.agents)}, possible_agents are {sorted(full)}"
                )
            self._latest[b] = 0.0
            self._write_obs(b, obs, infos)
            self._alive[b] = True
            self._over[b] = False
        self._all_shown = bool(self._shown.all())

    def observe(self) -> np.ndarray:
        """Observations (B, N, D) float32: zeros for agents that left before the last step."""
        if self._all_shown:
            return self._latest
        return np.where(self._shown[..., None], self._latest, np.float32(0.0))

    def global_state(self) -> np.ndarray:
        """The env's ``state()`` per copy, else every agent's latest observation joined."""
        if self._own_state:
            for b, env in enumerate(self.envs):
                self._state[b] = env.state()
            return self._state
        return self._latest.reshape(self.batch_size, -1)

    def alive(self) -> np.ndarray:
        """(B, N) bool: the agents that act at the next step (not left the episode)."""
        return self._alive

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:
        """Step every running copy; a copy that ended and was not reset is left as it is."""
        agents, count = self.agents, len(self.agents)
        if self._discrete:
            values = np.asarray(actions).reshape(self.batch_size, count).tolist()
        else:
            space = self.action_space
            values = np.clip(actions, space.low, space.high).astype(space.dtype)
        terminated, truncated = self._last_flags
        rewards = self._rewards
        rewards[:] = 0.0
        share = self.config.team_reward
        all_shown = True
        for b, env in enumerate(self.envs):
            if self._over[b]:
                continue
            live = env.agents
            row = values[b]
            if len(live) == count:
                action = dict(zip(agents, row))
            else:
                action = {a: row[n] for n, a in enumerate(agents) if self._alive[b, n]}
            obs, reward, terms, truncs, infos = self._steps[b](action)
            all_shown &= self._write_obs(b, obs, infos)
            if len(reward) == count:
                try:
                    rewards[b] = [reward[a] for a in agents]
                except KeyError:
                    rewards[b] = [reward.get(a, 0.0) for a in agents]
            else:
                rewards[b] = [reward.get(a, 0.0) for a in agents]
            if share and reward:
                rewarded = [n for n, a in enumerate(agents) if a in reward]
                got = rewards[b, rewarded]
                rewards[b, rewarded] = got + share * (got.mean() - got)
            now = env.agents
            if len(now) != count:
                still = set(now)
                alive = [a in still for a in agents]
                if any(alive[n] and not self._alive[b, n] for n in range(count)):
                    raise ValueError("agents that join mid-episode need the stock sampler")
                self._alive[b] = alive
            done = not now or all(terms.get(a, False) or truncs.get(a, False) for a in obs)
            term = done and all(terms.get(a, False) for a in terms)
            terminated[b], truncated[b] = term, done and not term
            self._over[b] = done
        # A copy skipped this step may still hide an agent: ask the buffer then.
        self._all_shown = all_shown and (not self._over.any() or bool(self._shown.all()))
        out = rewards.copy()
        return StepResult(
            rewards=out,
            components={"reward": out},
            terminated=terminated.copy(),
            truncated=truncated.copy(),
        )

    def default_action(self) -> np.ndarray:
        """Action 0 (Discrete) or zeros (Box): the env's usual no-op."""
        return np.zeros(self.action_space.shape, dtype=self.action_space.dtype)

    def close(self) -> None:
        """Close every copy's env."""
        for env in self.envs:
            env.close()


class PettingZooEnv(MultiAgentEnv):
    """RLlib view of a PettingZoo parallel env (see the module docstring)."""

    config_model: ClassVar[type[BaseModel]] = PettingZooConfig
    core_cls: ClassVar[type[BatchedCore]] = ParallelEnvCore
    reward_components: ClassVar[tuple[str, ...]] = ()
    task_levels: ClassVar[tuple[str, ...]] = ()
    baselines: ClassVar[tuple[str, ...]] = ()

    def __new__(cls, config: dict[str, Any] | None = None) -> Any:
        """The adapter, or a :class:`TurnBasedEnv` when the factory builds a turn-based env."""
        if cls is not PettingZooEnv:
            return super().__new__(cls)
        env_config = PettingZooConfig.model_validate(dict(config or {}))
        built = load_factory(env_config.source)(**env_config.kwargs)
        if is_turn_based(built):
            return TurnBasedEnv(built, team_reward=env_config.team_reward)
        adapter = super().__new__(cls)
        adapter._built = built  # __init__ makes it parallel rather than build it again
        return adapter

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.env_config = PettingZooConfig.model_validate(dict(config or {}))
        built = self.__dict__.pop("_built", None)
        self.par_env = (
            make_parallel_env(self.env_config.source, self.env_config.kwargs)
            if built is None
            else as_parallel(built, self.env_config.source)
        )
        self.possible_agents = list(self.par_env.possible_agents)
        self.agents = list(self.possible_agents)
        raw_spaces = {a: self.par_env.observation_space(a) for a in self.possible_agents}
        self._masked = {a: _has_mask(s) for a, s in raw_spaces.items()}
        self.action_spaces = {a: self.par_env.action_space(a) for a in self.possible_agents}
        # Masks in infos (PettingZoo's other convention) join the observation as well.
        self._info_masked = set(info_masked_agents(self.par_env))
        self.observation_spaces = {
            a: self._convert_space(s)
            if self._masked[a]
            else gym.spaces.Dict(
                {"observations": s, "action_mask": info_mask_space(self.action_spaces[a])}
            )
            if a in self._info_masked
            else s
            for a, s in raw_spaces.items()
        }
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        first = self.action_spaces[self.possible_agents[0]]
        self.action_names = _declared_action_names(self.par_env, first)
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
    def batched_reason(cls, env_config: dict[str, Any]) -> str | None:
        """Why :class:`ParallelEnvCore` cannot run this config (one line), or None."""
        config = PettingZooConfig.model_validate(dict(env_config))
        try:
            par_env = make_parallel_env(config.source, config.kwargs)
        except TurnBasedEnvError:
            return "turn-based env: the stock sampler runs it"
        try:
            return core_reason(par_env)
        finally:
            par_env.close()

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

    def _convert_obs(self, obs: dict[str, Any], infos: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for agent, value in obs.items():
            raw = value["observation"] if self._masked[agent] else value
            self._latest[agent] = gym.spaces.flatten(self._raw_obs[agent], raw)
            if self._masked[agent]:
                out[agent] = {"observations": raw, "action_mask": value["action_mask"]}
            elif agent in self._info_masked:
                out[agent] = {"observations": raw, "action_mask": self._info_mask(agent, infos)}
            else:
                out[agent] = value
        return out

    def _info_mask(self, agent: str, infos: dict[str, Any]) -> np.ndarray:
        """`agent`'s ``infos`` mask as int8 (every action allowed when it sent none)."""
        space = self.observation_spaces[agent]["action_mask"]
        info = infos.get(agent) if infos else None
        mask = info.get("action_mask") if isinstance(info, dict) else None
        if mask is None:
            return np.ones(space.shape, np.int8)
        return np.asarray(mask, dtype=np.int8).reshape(space.shape)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: D102
        obs, infos = self.par_env.reset(seed=seed, options=options)
        self.agents = list(self.par_env.agents)
        self._latest = {}
        self._episode_over = False
        infos = infos or {}
        return self._convert_obs(obs, infos), {a: infos.get(a, {}) for a in obs}

    def step(self, action_dict: dict[str, Any]):  # noqa: D102
        if self._episode_over:
            raise RuntimeError("step() after the episode ended; call reset() first")
        live = set(self.par_env.agents)
        unknown = [str(a) for a in action_dict if a not in live]
        if unknown:
            raise ValueError(f"unknown or departed agent id(s) {', '.join(unknown)}")
        actions = {a: checked_action(a, self.action_spaces[a], v) for a, v in action_dict.items()}
        obs, rewards, terms, truncs, infos = self.par_env.step(actions)
        self.agents = list(self.par_env.agents)
        done_all = not self.agents or all(terms.get(a, False) or truncs.get(a, False) for a in obs)
        terminateds = dict(terms)
        truncateds = dict(truncs)
        terminateds["__all__"] = done_all and all(terms.get(a, False) for a in terms)
        truncateds["__all__"] = done_all and not terminateds["__all__"]
        self._episode_over = done_all
        rewards = share_team_reward(rewards, self.env_config.team_reward)
        return self._convert_obs(obs, infos), rewards, terminateds, truncateds, infos

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


def _declared_action_names(env: Any, space: gym.Space) -> tuple[str, ...]:
    """A PettingZoo env's own ``action_names``, if it has one name per action (or Box dim)."""
    names = getattr(env, "action_names", None)
    size = int(space.n) if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))
    if isinstance(names, list | tuple) and len(names) == size:
        return tuple(str(n) for n in names)
    return ()
