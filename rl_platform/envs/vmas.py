"""VMAS scenarios as a batched core: ``env.id: vmas:<scenario>`` (e.g. ``vmas:navigation``).

:class:`VmasCore` steps ONE VMAS world of B copies (CPU torch) for all copies and agents
at once; :class:`VmasEnv` is its RLlib view at B = 1 (``VmasEnv.parallel_env`` the
PettingZoo one). ``vmas`` is an optional extra (``pip install -e '.[vmas]'``) imported only
when an env is built. Config keys, what is batched and the limits: docs/environments.md
("VMAS envs").
"""

from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import ConfigDict, Field, field_validator

from rl_platform import registry
from rl_platform.envs.base import (
    CoreEnvConfig,
    CoreMultiAgentEnv,
    ForeignCore,
    StepResult,
)

# make_env's own arguments: the platform sets them, so they are no scenario kwargs.
RESERVED = frozenset(
    {
        "num_envs",
        "device",
        "seed",
        "wrapper",
        "wrapper_kwargs",
        "dict_spaces",
        "multidiscrete_actions",
        "clamp_actions",
        "grad_enabled",
        "terminated_truncated",
    }
)
UNUSED_KWARGS = "passed but not used by the scenario"  # VMAS's warning, made an error here


class VmasConfig(CoreEnvConfig):
    """``scenario`` comes from the id; every key not declared here is a scenario kwarg."""

    model_config = ConfigDict(extra="allow")

    scenario: str = Field(description="The VMAS scenario (bound from the id vmas:<scenario>).")
    max_steps: int = Field(
        default=100, ge=1, description="Episode length: copies truncate after this many steps."
    )
    continuous_actions: bool = Field(
        default=True, description="Box forces; false: Discrete(n) moves (VMAS's discrete)."
    )
    torch_threads: int = Field(
        default=1,
        ge=0,
        description="Threads torch uses inside VMAS's calls (its ops are small: one thread is "
        "fastest on a busy CPU); 0 = leave torch's own setting.",
    )

    @field_validator("scenario")
    @classmethod
    def _known(cls, scenario: str) -> str:
        registry.check_vmas_scenario(scenario)
        return scenario

    @property
    def scenario_kwargs(self) -> dict[str, Any]:
        """The keyword arguments passed on to the scenario (``vmas.make_env(**kwargs)``)."""
        return dict(self.model_extra or {})


def _import_vmas() -> Any:
    try:
        import vmas
    except ImportError as err:
        raise ValueError(
            f"VMAS envs need the vmas package ({err}): {registry.VMAS_INSTALL_HINT}"
        ) from None
    return vmas


def _seeded_state(seed: int) -> list[Any]:
    """VMAS's (torch, numpy, random) generator states, all seeded from `seed`."""
    import torch

    return [
        torch.Generator().manual_seed(seed).get_state(),
        np.random.RandomState(seed).get_state(),
        random.Random(seed).getstate(),
    ]


class VmasCore(ForeignCore):
    """B copies of a VMAS scenario: one VMAS world of ``batch_size`` environments.

    VMAS draws from process-wide generators it swaps in around each call; each core keeps
    its own copy of them, seeded at every :meth:`reset` from the numpy generator passed
    in, so the same generator gives the same episodes whatever other worlds run in the
    process.
    """

    def __init__(self, config: VmasConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        _import_vmas()
        import torch
        from vmas.simulator.environment import Environment

        self._torch = torch
        self._shared = Environment.vmas_random_state  # the list VMAS's calls swap in
        self._random = _seeded_state(0)
        self._env = self._make_env(config, batch_size)
        agents = self._env.agents
        self._n = len(agents)
        obs = self._call(self._observations)
        self.observation_space, self.action_space = self._spaces(agents, obs)
        dim = self.observation_space.shape[0]
        self.state_space = gym.spaces.Box(-np.inf, np.inf, (self._n * dim,), np.float32)
        self._discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self._obs = np.stack([o.numpy() for o in obs], axis=1)

    def _make_env(self, config: VmasConfig, batch_size: int) -> Any:
        import vmas

        kwargs = config.scenario_kwargs
        reserved = sorted(RESERVED & set(kwargs))
        if reserved:
            raise ValueError(
                f"VMAS scenario {config.scenario!r}: {', '.join(reserved)} cannot be set "
                "(the platform sets vmas.make_env's own arguments)"
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                env = self._call(
                    vmas.make_env,
                    config.scenario,
                    num_envs=batch_size,
                    device="cpu",
                    continuous_actions=config.continuous_actions,
                    max_steps=config.max_steps,
                    terminated_truncated=True,
                    **kwargs,
                )
            except TypeError as err:
                raise ValueError(
                    f"VMAS scenario {config.scenario!r} refused the kwargs {kwargs}: {err}"
                ) from None
        unused = [str(w.message) for w in caught if UNUSED_KWARGS in str(w.message)]
        if unused:
            raise ValueError(
                f"VMAS scenario {config.scenario!r} does not take some of env.config "
                f"{sorted(kwargs)}: {unused[0].split('. ')[0]}"
            )
        return env

    def _spaces(self, agents: list[Any], obs: list[Any]) -> tuple[gym.spaces.Box, gym.Space]:
        """The one observation and action space all agents share (else ValueError)."""
        names = [agent.name for agent in agents]
        shapes = [tuple(o.shape[1:]) if isinstance(o, self._torch.Tensor) else None for o in obs]
        if any(s is None or len(s) != 1 for s in shapes):
            raise ValueError(
                f"VMAS scenario {self.config.scenario!r}: observations must be flat vectors, "
                f"got {dict(zip(names, [type(o).__name__ for o in obs]))}"
            )
        if len(set(shapes)) > 1:
            described = ", ".join(f"{n} {s[0]}" for n, s in zip(names, shapes))
            raise ValueError(
                f"VMAS scenario {self.config.scenario!r}: agents' observation spaces differ "
                f"({described}); the platform needs one space for all agents"
            )
        actions = [_gymnasium_space(self._env.get_agent_action_space(a)) for a in agents]
        if any(a != actions[0] for a in actions):
            described = ", ".join(f"{n} {a}" for n, a in zip(names, actions))
            raise ValueError(
                f"VMAS scenario {self.config.scenario!r}: agents' action spaces differ "
                f"({described}); the platform needs one space for all agents"
            )
        return gym.spaces.Box(-np.inf, np.inf, shapes[0], np.float32), actions[0]

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with this core's generators as VMAS's, on its threads."""
        torch, shared = self._torch, self._shared
        threads = torch.get_num_threads()
        wanted = self.config.torch_threads or threads
        if wanted != threads:
            torch.set_num_threads(wanted)
        others = shared[:]
        shared[:] = self._random
        try:
            return fn(*args, **kwargs)
        finally:
            self._random = shared[:]
            shared[:] = others
            if wanted != threads:
                torch.set_num_threads(threads)

    def _observations(self) -> list[Any]:
        return self._env.get_from_scenario(
            get_observations=True, get_rewards=False, get_infos=False, get_dones=False
        )[0]

    @property
    def num_agents(self) -> int:  # noqa: D102
        return self._n

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:
        """New episodes: one vectorized reset for all copies, else each masked copy's.

        The generators VMAS draws from are re-seeded from `rng` first.
        """
        self._random = _seeded_state(int(rng.integers(2**32)))
        if mask is None or np.all(mask):
            obs = self._call(self._env.reset)
        else:
            for index in np.flatnonzero(mask).tolist():
                self._call(self._env.reset_at, index, return_observations=False)
            obs = self._call(self._observations)
        self._obs = np.stack([o.numpy() for o in obs], axis=1)

    def observe(self) -> np.ndarray:  # noqa: D102
        return self._obs.copy()

    def global_state(self) -> np.ndarray:
        """Every agent's observation joined, (B, N * obs_dim) float32."""
        return self._obs.reshape(self.batch_size, -1).copy()

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:  # noqa: D102
        obs, rewards, terminated, truncated, _ = self._call(
            self._env.step, self._agent_actions(actions)
        )
        self._obs = np.stack([o.numpy() for o in obs], axis=1)
        b = self.batch_size  # some scenarios (wheel) give rewards of shape (B, 1)
        reward = self._torch.stack([r.reshape(b) for r in rewards], dim=1).numpy()
        reward = reward.astype(np.float32, copy=False)
        terminated = terminated.reshape(b).numpy().astype(bool)
        return StepResult(
            rewards=self.weigh({"reward": reward}),
            components={"reward": reward},
            terminated=terminated,
            truncated=truncated.reshape(b).numpy().astype(bool) & ~terminated,
        )

    def _agent_actions(self, actions: np.ndarray) -> list[Any]:
        """Actions (B, N, ...) as VMAS's per-agent tensors, new memory (VMAS keeps them)."""
        if self._discrete:
            array = np.asarray(actions).astype(np.int64)
        else:
            space = self.action_space
            array = np.clip(actions, space.low, space.high).astype(np.float32, copy=False)
        tensor = self._torch.from_numpy(np.ascontiguousarray(array))
        return list(tensor.unbind(dim=1))

    def counterfactual_rewards(
        self, actions: np.ndarray, rng: np.random.Generator, agent: int
    ) -> np.ndarray:
        """Rewards (B, N) of this step with `agent`'s action replaced by the default.

        Stepped on a copy of the VMAS world (VMAS has no state snapshot), so this core's
        world and generators are left as they were.
        """
        replaced = np.array(actions, copy=True)
        replaced[:, agent] = self.default_action()
        twin = copy.copy(self)
        twin._env = copy.deepcopy(self._env)
        return twin.step(replaced, rng).rewards

    def default_action(self) -> np.ndarray:
        """No force (continuous) or action 0, VMAS's no-op move (discrete)."""
        if self._discrete:
            return np.int64(0)
        return np.zeros(self.action_space.shape, dtype=np.float32)


def _gymnasium_space(space: Any) -> gym.Space:
    """A VMAS (gym) Box or Discrete action space as gymnasium's."""
    if hasattr(space, "n"):
        return gym.spaces.Discrete(int(space.n))
    return gym.spaces.Box(
        np.asarray(space.low, np.float32), np.asarray(space.high, np.float32), dtype=np.float32
    )


class VmasEnv(CoreMultiAgentEnv):
    """RLlib ``MultiAgentEnv`` of one copy of a VMAS scenario (PettingZoo: ``parallel_env``)."""

    core_cls = VmasCore
    config_model = VmasConfig

    @classmethod
    def probe_config(cls, config: dict[str, Any]) -> None:
        """Build one copy so that a bad scenario kwarg or a missing vmas fails at config time."""
        VmasCore(VmasConfig.model_validate(dict(config)), batch_size=1)
