"""The env side of sampling: observation + global state, B=1 and batched.

:class:`GlobalStateObservations` is the one implementation of what a centralized critic
sees: each agent observes ``{"obs": local, "state": global}``, with its one-hot index
appended to both when ``agent_id`` is set (MAPPO paper, section 4: agent-specific
global state and agent ids), for B copies x N agents at once. :class:`GlobalStateEnv`
is its B=1 view (the env RLlib's stock runner steps), :class:`BatchedMultiAgentEnv`
runs it over B copies of a batched core for the batched runner. An inner env with action
masks (RLlib's ``{"observations", "action_mask"}``) adds a third key, ``"action_mask"``
(float32 0/1, one per action): docs/custom-envs.md, "Action masks".
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rl_platform import registry
from rl_platform.advanced.hierarchical import build_env
from rl_platform.rewards import BatchedRewards, RewardEnv, action_vectors, make_env


def has_core(env_cls: Any) -> bool:
    """Whether `env_cls` is an env view with a batched core (a ``core_cls``)."""
    return isinstance(env_cls, type) and isinstance(getattr(env_cls, "core_cls", None), type)


def unsupported_reason(experiment: Any) -> str | None:
    """Why the batched sampler cannot run an experiment, or None when it can.

    The env's class needs a ``core_cls``; its ``batched_reason(env_config)``, when it
    has one, says why its core cannot run this config (the PettingZoo view's does).
    """
    entry = registry.get_env(experiment.env.id)
    env_cls = entry.load() if entry is not None else None
    if not has_core(env_cls):
        return f"env {experiment.env.id!r} has no batched core"
    batched_reason = getattr(env_cls, "batched_reason", None)
    if batched_reason is not None:
        reason = batched_reason(registry.env_config_of(experiment))
        if reason is not None:
            return reason
    if experiment.rewards.difference:
        return "rewards.difference is not supported by the batched sampler yet"
    if experiment.safety is not None and experiment.safety.enabled:
        return "the safety shield is not supported by the batched sampler yet"
    if experiment.algorithm.hyperparams.get("recurrent") and experiment.algorithm.id not in (
        "mappo",
        "ippo",
    ):
        return "recurrent value-based agents (replayed sequences) need the stock sampler"
    return None


def with_one_hot(space: gym.Space, size: int, where: str) -> gym.spaces.Box:
    """A flat Box with room for a `size`-long one-hot after its values."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"{where} must be a flat Box to add a centralized critic, got {space}; "
            "image observations are not supported yet"
        )
    low = np.concatenate([space.low, np.zeros(size)]).astype(np.float32)
    high = np.concatenate([space.high, np.ones(size)]).astype(np.float32)
    return gym.spaces.Box(low, high, dtype=np.float32)


def mask_size(space: gym.Space) -> int:
    """The action-mask length of an observation space (0: no mask).

    A mask is RLlib's convention: a ``Dict`` with ``observations`` and ``action_mask``
    (a flat Box or MultiBinary).
    """
    if not isinstance(space, gym.spaces.Dict) or "action_mask" not in space.spaces:
        return 0
    mask = space.spaces["action_mask"]
    if set(space.spaces) != {"observations", "action_mask"} or len(mask.shape or ()) != 1:
        raise ValueError(
            f"an observation with an action mask must be a Dict of 'observations' and a flat "
            f"'action_mask', got {space}"
        )
    return int(mask.shape[0])


def split_masked(space: gym.Space) -> tuple[gym.Space, int]:
    """(the observation part of `space`, its mask length or 0)."""
    size = mask_size(space)
    return (space.spaces["observations"], size) if size else (space, 0)


def mask_space(size: int) -> gym.spaces.Box:
    """The ``action_mask`` space a module sees: float32 0/1, one per action."""
    return gym.spaces.Box(0.0, 1.0, (size,), np.float32)


class GlobalStateObservations:
    """``{"obs": local, "state": global}`` per agent, the agent one-hots appended, as arrays.

    ``spaces`` are each agent's Dict observation space. :meth:`empty` makes room for
    (..., K, width) observations of K agents, one-hots written once (they never change),
    and :meth:`fill` writes local observations (..., K, D) and global states (..., S)
    into it. Agents whose observation space carries an action mask (RLlib's
    ``{"observations", "action_mask"}``) also get ``"action_mask"`` (..., K, n_actions),
    float32 0/1.
    """

    def __init__(
        self,
        agents: list[str],
        observation_spaces: dict[str, gym.Space],
        state_space: gym.Space,
        agent_id: bool,
    ) -> None:
        self.agents = list(agents)
        self.ids = len(self.agents) if agent_id else 0
        state = with_one_hot(state_space, self.ids, "the global state")
        split = {a: split_masked(observation_spaces[a]) for a in self.agents}
        self.masks = [split[a][1] for a in self.agents]  # mask length per agent, 0: none
        self.spaces = {}
        for a, (local, size) in split.items():
            spaces = {
                "obs": with_one_hot(local, self.ids, f"{a}'s observation"),
                "state": state,
            }
            if size:
                spaces["action_mask"] = mask_space(size)
            self.spaces[a] = gym.spaces.Dict(spaces)
        self.widths = [self.spaces[a]["obs"].shape[0] for a in self.agents]
        # every agent's observation as wide, and masks of one length (or none)
        self.uniform = len(set(self.widths)) == 1 and len(set(self.masks)) == 1
        self.masked = any(self.masks)
        self.one_hot = np.eye(len(self.agents), dtype=np.float32)[:, : self.ids]

    def empty(self, lead: tuple[int, ...], columns: Any = slice(None)) -> dict[str, np.ndarray]:
        """Uninitialized float32 room (*lead, K, width) for agents `columns` (one width)."""
        one_hot = self.one_hot[columns]
        first = np.arange(len(self.agents))[columns].flat[0]
        agents = (*lead, len(one_hot))
        state = self.spaces[self.agents[first]]["state"].shape[0]
        out = {
            "obs": np.empty((*agents, self.widths[first]), dtype=np.float32),
            "state": np.empty((*agents, state), dtype=np.float32),
        }
        for array in out.values():
            array[..., array.shape[-1] - self.ids :] = one_hot
        if self.masks[first]:
            out["action_mask"] = np.ones((*agents, self.masks[first]), dtype=np.float32)
        return out

    @staticmethod
    def fill(
        out: dict[str, np.ndarray],
        obs: np.ndarray,
        state: np.ndarray,
        masks: np.ndarray | None = None,
    ) -> dict:
        """Write local observations (..., K, D), global states (..., S), masks (..., K, A)."""
        out["obs"][..., : obs.shape[-1]] = obs
        out["state"][..., : state.shape[-1]] = state[..., None, :]
        if masks is not None and "action_mask" in out:
            out["action_mask"][...] = masks
        return out


class GlobalStateEnv(MultiAgentEnv):
    """A registered env whose agents observe ``{"obs": local, "state": global}``.

    The B=1 view of :class:`GlobalStateObservations`. Config: ``env_id`` (a registry
    id), ``env_config`` (its constructor config), ``agent_id`` (append one-hot agent
    indices) and optionally ``rewards`` (the experiment's reward section: the env is then
    built inside a :class:`~rl_platform.rewards.RewardEnv`, or, with ``hierarchy``, in a
    :class:`~rl_platform.advanced.hierarchical.HierarchicalEnv`). Task switching and the
    rest of the inner env's API stay reachable through :attr:`inner`, ``set_task`` and
    ``get_task``.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        if config.get("hierarchy"):
            self.inner = build_env(config)
        elif "rewards" in config:
            self.inner = RewardEnv(config)
        else:
            self.inner = make_env(
                config["env_id"], config.get("env_config", {}), config.get("env_class")
            )
        self.possible_agents = list(self.inner.possible_agents)
        self.agents = list(self.possible_agents)
        self.views = GlobalStateObservations(
            self.possible_agents,
            self.inner.observation_spaces,
            self.inner.state_space,
            bool(config.get("agent_id", False)),
        )
        self._column = {agent: n for n, agent in enumerate(self.possible_agents)}
        self._blank = self.views.empty(()) if self.views.uniform else {}
        self.observation_spaces = dict(self.views.spaces)
        self.action_spaces = dict(self.inner.action_spaces)
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)

    def _wrap(self, obs: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        state = np.asarray(self.inner.state(), dtype=np.float32)
        masks = None
        if self.views.masked:  # RLlib's {"observations", "action_mask"} from the inner env
            masks = {a: o["action_mask"] for a, o in obs.items() if isinstance(o, dict)}
            obs = {a: o["observations"] if isinstance(o, dict) else o for a, o in obs.items()}
        agents = list(obs)
        views = self.views
        if views.uniform:
            if agents == self.possible_agents:  # the usual case: its one-hots are ready
                out = {key: array.copy() for key, array in self._blank.items()}
            else:
                out = views.empty((), [self._column[a] for a in agents])
            views.fill(
                out,
                np.stack(list(obs.values())),
                state,
                None if masks is None else np.stack([masks[a] for a in agents]),
            )
            return {a: {k: v[n] for k, v in out.items()} for n, a in enumerate(agents)}
        wrapped = {}  # observations of different widths: one agent at a time
        for a, o in obs.items():
            mask = None if masks is None or a not in masks else masks[a][None]
            out = views.fill(views.empty((), [self._column[a]]), o[None], state, mask)
            wrapped[a] = {k: v[0] for k, v in out.items()}
        return wrapped

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: D102
        obs, infos = self.inner.reset(seed=seed, options=options)
        self.agents = list(self.inner.agents)
        return self._wrap(obs), infos

    def step(self, action_dict: dict[str, Any]):  # noqa: D102
        obs, rewards, terms, truncs, infos = self.inner.step(action_dict)
        self.agents = list(self.inner.agents)
        return self._wrap(obs), rewards, terms, truncs, infos

    def state(self) -> np.ndarray:
        """The inner env's global state."""
        return self.inner.state()

    def set_task(self, level: str) -> None:
        """Switch the inner env's task level."""
        self.inner.set_task(level)

    def get_task(self) -> str:
        """The inner env's task level."""
        return self.inner.get_task()


class BatchedMultiAgentEnv:
    """B copies of an experiment's env as one batched core, with the wrappers' spaces.

    Built from the env class and config the experiment gives RLlib
    (:class:`GlobalStateEnv` or :class:`~rl_platform.rewards.RewardEnv`); one
    single-copy instance of it provides the spaces, agent ids and reward settings, so
    what the modules see is exactly what the stock runner would give them. Rewards are
    the wrappers' :class:`~rl_platform.rewards.BatchedRewards` over B copies, observations
    their :class:`GlobalStateObservations`. Has the attributes RLlib reads from a vector
    env (``single_observation_space``, ``num_envs``, ``unwrapped``) and the curriculum's
    ``set_task``/``get_task``.
    """

    metadata: dict[str, Any] = {}
    envs: list[Any] = []
    observation_space = None
    action_space = None

    def __init__(self, env_cls: type, env_config: dict[str, Any], num_envs: int) -> None:
        template = env_cls(dict(env_config))
        self.dict_obs = isinstance(template, GlobalStateEnv)
        reward_env = template.inner if self.dict_obs else template
        if not isinstance(reward_env, RewardEnv):
            raise ValueError(
                f"the batched sampler needs a RewardEnv or GlobalStateEnv, got {env_cls.__name__}"
            )
        inner = reward_env.inner
        if not has_core(type(inner)):
            raise ValueError(f"{type(inner).__name__} has no batched core")
        if reward_env._shield is not None:
            raise ValueError("the safety shield is not supported by the batched sampler yet")
        if reward_env.spec_.difference:
            raise ValueError("difference rewards are not supported by the batched sampler")
        self.num_envs = num_envs
        self.core = inner.core_cls(inner.env_config, batch_size=num_envs)
        self.rewards = BatchedRewards(reward_env.spec_, num_envs, self.core.num_agents)
        # Reward components are summed into the episode summaries as the single-copy
        # view reports them: only for views that declare them (not PettingZoo's).
        self._components = bool(type(inner).reward_components)
        self._levels = bool(type(inner).task_levels)  # else no level, as RewardEnv reports
        self.alive = getattr(self.core, "alive", None)  # agents that leave: (B, N) bool
        self.views = template.views if self.dict_obs else None
        self.possible_agents = list(template.possible_agents)
        first = template.observation_spaces[self.possible_agents[0]]
        # Action masks: a third key of the views, or RLlib's {"observations", "action_mask"}.
        self.masked = self.views.masked if self.views is not None else bool(mask_size(first))
        if self.masked and not callable(getattr(self.core, "action_masks", None)):
            raise ValueError(f"{type(self.core).__name__} reports no action masks")
        self._raw_masked = self.masked and self.views is None
        self._mask_dtype = first["action_mask"].dtype if self._raw_masked else np.float32
        self.single_observation_spaces = dict(template.observation_spaces)
        self.single_action_spaces = dict(template.action_spaces)
        self.single_observation_space = gym.spaces.Dict(self.single_observation_spaces)
        self.single_action_space = gym.spaces.Dict(self.single_action_spaces)
        self.agent_action_space = self.core.action_space
        self.closed = False

    @property
    def unwrapped(self) -> BatchedMultiAgentEnv:
        """Itself (RLlib and the curriculum call ``env.unwrapped``)."""
        return self

    def empty(self, rows: int | None = None) -> dict[str, np.ndarray] | np.ndarray:
        """Uninitialized float32 room for observations: (B, N, ...), or (rows, B, N, ...)."""
        lead = (self.num_envs,) if rows is None else (rows, self.num_envs)
        if self.views is not None:
            return self.views.empty(lead)
        space = self.single_observation_spaces[self.possible_agents[0]]
        if self._raw_masked:
            agents = (*lead, self.core.num_agents)
            local, mask = space["observations"], space["action_mask"]
            return {
                "observations": np.empty((*agents, *local.shape), dtype=np.float32),
                "action_mask": np.ones((*agents, *mask.shape), dtype=self._mask_dtype),
            }
        return np.empty((*lead, self.core.num_agents, *space.shape), dtype=np.float32)

    def observe(self, out: Any = None) -> dict[str, np.ndarray] | np.ndarray:
        """What the agents observe now (B, N, ...), a dict for GlobalStateEnv or masks.

        Written into `out` (what :meth:`empty` gives, or a row of it: its agent
        one-hots are already there) when given, else into new arrays.
        """
        if out is None:
            out = self.empty()
        obs = self.core.observe()
        masks = self.core.action_masks() if self.masked else None
        if self._raw_masked:
            local = out["observations"]
            local[...] = obs.reshape(local.shape)
            out["action_mask"][...] = masks
            return out
        if self.views is None:
            out[...] = obs.reshape(out.shape)  # a Box observation of any shape, flattened
            return out
        return self.views.fill(out, obs, self.core.global_state(), masks)

    def start_rewards(self, mask: np.ndarray | None = None) -> None:
        """Copies `mask` (all when None) were just reset: new reward totals and potentials."""
        shaping = self.rewards.spec.shaping
        phi = None if shaping is None else self.core.potential(shaping.potential)
        self.rewards.start(mask, phi=phi, level=self.core.get_task() if self._levels else None)

    def compose_rewards(self, result: Any, env_actions: np.ndarray) -> np.ndarray:
        """The training reward (B, N) float32 of a step just taken (before any reset)."""
        rewards = self.rewards
        shaping = rewards.spec.shaping
        total = rewards.compose(
            result.rewards,
            terminated=result.terminated[:, None],
            phi_next=None if shaping is None else self.core.potential(shaping.potential),
            vectors=action_vectors(env_actions, self.agent_action_space) if rewards.bonus else None,
            components=(
                (
                    tuple(result.components),
                    result.stacked
                    if result.stacked is not None
                    else list(result.components.values()),
                )
                if self._components
                else ((), ())
            ),
        )
        return total.astype(np.float32)

    def summaries(self, copies: np.ndarray) -> list[dict[str, Any]]:
        """The last-step infos entry of each copy's episode (what RewardEnv reports)."""
        return self.rewards.summaries(copies)

    def set_task(self, level: str) -> None:
        """Switch difficulty: each copy takes it at its next reset."""
        self.core.set_task(level)

    def get_task(self) -> str:
        """The current difficulty level."""
        return self.core.get_task()

    def close(self) -> None:
        """Close the core's env copies, if it holds any."""
        close = getattr(self.core, "close", None)
        if close is not None:
            close()
        self.closed = True
