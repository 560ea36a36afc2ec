"""Batched sampling: an RLlib EnvRunner that steps B env copies and all agents at once.

RLlib's stock ``MultiAgentEnvRunner`` steps a ``SyncVectorMultiAgentEnv`` of B single-copy
envs: per env step it builds dicts of dicts, runs the connector pipelines and appends to
an episode object per copy, which caps sampling at a few thousand env steps/s whatever
the env's own speed. :class:`BatchedEnvRunner` keeps RLlib's contract (it returns
``MultiAgentEpisode`` chunks the learner connectors consume, logs the same metrics,
syncs weights, checkpoints and restarts like the stock runner) but samples from the
env's :class:`~rl_platform.envs.base.BatchedCore` directly:

* each step is ONE ``core.step`` over B copies x N agents and ONE forward pass per
  RLModule over all the observations that module acts on (``forward_exploration`` and
  the module's exploration action distribution, log-probs included, drawn in numpy
  for RLlib's Gaussian and categorical distributions (:func:`draw_actions`);
  ``forward_inference`` and the deterministic action when not exploring; a module that
  picks its actions itself, as IQL/VDN/QMIX's epsilon-greedy does, is taken at its word,
  and their replay buffers take the episodes as they come);
* copies whose episode ended are reset individually (``core.reset(rng, mask=done)``);
* the rollout stays in arrays ``(T, B, N, ...)``, observations written in place into a
  block reused once its episodes are gone (:class:`BlockPool`), and becomes episodes
  once per fragment (:func:`episodes_from_rollout`), not once per step: views of the
  arrays, built without RLlib's per-episode constructors and validation;
* episode metrics come from per-copy running sums (:class:`EpisodeTally`), not from
  keeping every chunk of an unfinished episode until it ends.

Rewards are composed as :class:`~rl_platform.rewards.RewardEnv` composes them, on arrays
(:class:`BatchedRewards`): the env's weighted reward with the team share, potential
shaping and the coordination bonus, with each episode's summary in the last infos (so
``env_runners/rewards/<name>`` and the curriculum work unchanged). Difference rewards,
the safety shield and recurrent modules are not supported yet: :func:`unsupported_reason`
names them and the experiment falls back to the stock runner with a log line.

Observations are what :class:`~rl_platform.envs.wrappers.GlobalStateEnv` gives
(``{"obs", "state"}`` with the agent one-hot when configured) or, for an env run in a
plain ``RewardEnv``, the local observation.

Not done (differences from the stock runner): ``on_episode_created``,
``on_episode_start`` and ``on_episode_step`` callbacks are not called (``on_episode_end``
and ``on_sample_end`` are); per-step infos are empty (one shared empty dict per agent and
chunk; only an episode's last infos carry its reward summary); the env-to-module and
module-to-env connector pipelines are not run (the runner does their default work:
observations to tensors, actions sampled, Box actions unsquashed or clipped as
``normalize_actions``/``clip_actions`` say), so custom connectors need the stock runner;
``on_episode_end`` gets ``prev_episode_chunks=[]`` (earlier chunks are not kept).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.callbacks.utils import make_callback
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchCategorical,
    TorchDiagGaussian,
)
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.env.single_agent_episode import _REWARDS_BOX_SPACE, SingleAgentEpisode
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer
from ray.rllib.utils.metrics import (
    NUM_AGENT_STEPS_SAMPLED,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
    NUM_MODULE_STEPS_SAMPLED,
    NUM_MODULE_STEPS_SAMPLED_LIFETIME,
    WEIGHTS_SEQ_NO,
)
from ray.rllib.utils.spaces.space_utils import (
    clip_action,
    get_base_struct_from_space,
    unsquash_action,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- support


def unsupported_reason(experiment: Any) -> str | None:
    """Why the batched sampler cannot run an experiment, or None when it can."""
    from rl_platform import registry
    from rl_platform.envs.base import CoreMultiAgentEnv

    entry = registry.get_env(experiment.env.id)
    env_cls = entry.load() if entry is not None else None
    if not (isinstance(env_cls, type) and issubclass(env_cls, CoreMultiAgentEnv)):
        return f"env {experiment.env.id!r} has no batched core"
    if experiment.rewards.difference:
        return "rewards.difference is not supported by the batched sampler yet"
    if experiment.safety is not None and experiment.safety.enabled:
        return "the safety shield is not supported by the batched sampler yet"
    if experiment.algorithm.hyperparams.get("recurrent"):
        return "recurrent modules (a hidden state per agent) need the stock sampler"
    return None


# --------------------------------------------------------------------------- rewards


def mean_cosine_similarities(vectors: np.ndarray) -> np.ndarray:
    """:func:`rl_platform.rewards.mean_cosine_similarity` over copies: (B, N, D) -> (B, N)."""
    count = vectors.shape[1]
    if count < 2:
        return np.zeros(vectors.shape[:2])
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    similarity = np.einsum("bnd,bmd->bnm", unit, unit)
    diagonal = np.einsum("bnn->bn", similarity)
    return (similarity.sum(axis=-1) - diagonal) / (count - 1)


class BatchedRewards:
    """:class:`~rl_platform.rewards.RewardEnv`'s reward composition on (B, N) arrays.

    Supports the env's weighted reward (team share included: the core applies it),
    potential shaping and the coordination bonus; keeps per-copy episode totals of every
    part and makes the episode summary RewardEnv reports.
    """

    def __init__(self, spec: Any, core: Any) -> None:
        from rl_platform.rewards import ENV_REWARD, TOTAL

        if spec.difference:
            raise ValueError("difference rewards are not supported by the batched sampler")
        self.spec = spec
        self.core = core
        coordination = spec.coordination
        self._bonus = 0.0
        if coordination is not None:
            self._bonus = coordination.weight * (1.0 if coordination.prefer == "similar" else -1.0)
        names = [ENV_REWARD]
        if spec.shaping is not None:
            names.append("shaping")
        if self._bonus:
            names.append("coordination")
        self.parts = [*names, TOTAL, *core.reward_components]
        shape = (core.batch_size, core.num_agents)
        self.totals = {name: np.zeros(shape) for name in self.parts}
        self._phi = np.zeros(shape, dtype=np.float32)
        self.levels = [core.get_task()] * core.batch_size

    def start(self, mask: np.ndarray | None = None) -> None:
        """Copies `mask` (all when None) were just reset: new totals, potentials and levels."""
        rows = slice(None) if mask is None else mask
        for totals in self.totals.values():
            totals[rows] = 0.0
        if self.spec.shaping is not None:
            phi = self.core.potential(self.spec.shaping.potential)
            self._phi[rows] = phi[rows]
        level = self.core.get_task()
        for b in range(self.core.batch_size) if mask is None else np.flatnonzero(mask):
            self.levels[b] = level

    def compose(self, result: Any, env_actions: np.ndarray, space: gym.Space) -> np.ndarray:
        """The training reward (B, N) float32 of a step just taken (before any reset)."""
        from rl_platform.rewards import ENV_REWARD, TOTAL

        env_reward = result.rewards
        total = env_reward.astype(np.float64)
        self.totals[ENV_REWARD] += env_reward
        if self.spec.shaping is not None:
            shaping = self.spec.shaping
            phi_next = self.core.potential(shaping.potential)
            keep = np.where(result.terminated, 0.0, shaping.gamma)[:, None]
            term = shaping.weight * (keep * phi_next - self._phi)
            self._phi = np.asarray(phi_next, dtype=np.float32).copy()
            self.totals["shaping"] += term
            total = total + term
        if self._bonus:
            if isinstance(space, gym.spaces.Discrete):
                vectors = np.eye(space.n)[np.asarray(env_actions, dtype=np.int64) - space.start]
            else:
                vectors = np.asarray(env_actions, dtype=np.float64).reshape(
                    *env_actions.shape[:2], -1
                )
            bonus = self._bonus * mean_cosine_similarities(vectors)
            self.totals["coordination"] += bonus
            total = total + bonus
        self.totals[TOTAL] += total
        for name, values in result.components.items():
            self.totals[name] += values
        return total.astype(np.float32)

    def summaries(self, copies: np.ndarray) -> list[dict[str, Any]]:
        """RewardEnv's last-step infos entry of each copy's episode (per-agent means)."""
        from rl_platform.rewards import EPISODE_INFO, TASK_INFO

        means = {name: totals[copies].mean(axis=1).tolist() for name, totals in self.totals.items()}
        return [
            {EPISODE_INFO: {name: values[i] for name, values in means.items()},
             TASK_INFO: self.levels[copy]}
            for i, copy in enumerate(copies.tolist())
        ]  # fmt: skip


# --------------------------------------------------------------------------- env


def _one_hot_box(space: gym.spaces.Box, size: int) -> gym.spaces.Box:
    from rl_platform.envs.wrappers import _with_one_hot

    return _with_one_hot(space, size, "the batched observation")


class BatchedMultiAgentEnv:
    """B copies of an experiment's env as one batched core, with the wrappers' spaces.

    Built from the env class and config the experiment gives RLlib
    (:class:`~rl_platform.envs.wrappers.GlobalStateEnv` or
    :class:`~rl_platform.rewards.RewardEnv`); one single-copy instance of it provides the
    spaces, agent ids and reward settings, so what the modules see is exactly what the
    stock runner would give them. Has the attributes RLlib reads from a vector env
    (``single_observation_space``, ``num_envs``, ``unwrapped``) and the curriculum's
    ``set_task``/``get_task``.
    """

    metadata: dict[str, Any] = {}
    envs: list[Any] = []
    observation_space = None
    action_space = None

    def __init__(self, env_cls: type, env_config: dict[str, Any], num_envs: int) -> None:
        from rl_platform.envs.base import CoreMultiAgentEnv
        from rl_platform.envs.wrappers import GlobalStateEnv
        from rl_platform.rewards import RewardEnv

        template = env_cls(dict(env_config))
        self.dict_obs = isinstance(template, GlobalStateEnv)
        reward_env = template.inner if self.dict_obs else template
        if not isinstance(reward_env, RewardEnv):
            raise ValueError(
                f"the batched sampler needs a RewardEnv or GlobalStateEnv, got {env_cls.__name__}"
            )
        inner = reward_env.inner
        if not isinstance(inner, CoreMultiAgentEnv):
            raise ValueError(f"{type(inner).__name__} has no batched core")
        if reward_env._shield is not None:
            raise ValueError("the safety shield is not supported by the batched sampler yet")
        self.num_envs = num_envs
        self.core = inner.core_cls(inner.env_config, batch_size=num_envs)
        self.rewards = BatchedRewards(reward_env.spec_, self.core)
        self.possible_agents = list(template.possible_agents)
        self.single_observation_spaces = dict(template.observation_spaces)
        self.single_action_spaces = dict(template.action_spaces)
        self.single_observation_space = gym.spaces.Dict(self.single_observation_spaces)
        self.single_action_space = gym.spaces.Dict(self.single_action_spaces)
        self.agent_action_space = self.core.action_space
        n = self.core.num_agents
        ids = 0
        if self.dict_obs:
            first = self.single_observation_spaces[self.possible_agents[0]]["obs"]
            ids = first.shape[0] - self.core.observation_space.shape[0]
        self._one_hot = np.broadcast_to(np.eye(n, dtype=np.float32)[:, :ids], (num_envs, n, ids))
        self.closed = False

    @property
    def unwrapped(self) -> BatchedMultiAgentEnv:
        """Itself (RLlib and the curriculum call ``env.unwrapped``)."""
        return self

    def empty(self, rows: int | None = None) -> dict[str, np.ndarray] | np.ndarray:
        """Uninitialized float32 room for observations: (B, N, ...), or (rows, B, N, ...)."""
        lead = (self.num_envs, self.core.num_agents)
        if rows is not None:
            lead = (rows, *lead)
        space = self.single_observation_spaces[self.possible_agents[0]]
        if not self.dict_obs:
            return np.empty((*lead, *space.shape), dtype=np.float32)
        out = {k: np.empty((*lead, *space[k].shape), dtype=np.float32) for k in ("obs", "state")}
        ids = self._one_hot.shape[-1]
        for array in out.values():  # the agent one-hots never change: written once
            array[..., array.shape[-1] - ids :] = self._one_hot
        return out

    def observe(self, out: Any = None) -> dict[str, np.ndarray] | np.ndarray:
        """What the agents observe now (B, N, ...), a dict for GlobalStateEnv.

        Written into `out` (what :meth:`empty` gives, or a row of it: its agent
        one-hots are already there) when given, else into new arrays.
        """
        if out is None:
            out = self.empty()
        obs = self.core.observe()
        if not self.dict_obs:
            out[...] = obs
            return out
        state = self.core.global_state()
        out["obs"][..., : obs.shape[-1]] = obs
        out["state"][..., : state.shape[-1]] = state[:, None, :]
        return out

    def set_task(self, level: str) -> None:
        """Switch difficulty: each copy takes it at its next reset."""
        self.core.set_task(level)

    def get_task(self) -> str:
        """The current difficulty level."""
        return self.core.get_task()

    def close(self) -> None:
        """Nothing to release."""
        self.closed = True


# --------------------------------------------------------------------------- episodes


def _take(struct: Any, index: Any) -> Any:
    if isinstance(struct, dict):
        return {k: v[index] for k, v in struct.items()}
    return struct[index]


def _assign(struct: Any, index: Any, value: Any) -> None:
    if isinstance(struct, dict):
        for k, v in struct.items():
            v[index] = value[k]
    else:
        struct[index] = value


def _copy(struct: Any) -> Any:
    if isinstance(struct, dict):
        return {k: np.array(v) for k, v in struct.items()}
    return np.array(struct)


def _prepend(first: Any, rest: Any) -> Any:
    """One row `first` (...) followed by the rows of `rest` (L, ...)."""
    if isinstance(rest, dict):
        return {k: np.concatenate([first[k][None], v]) for k, v in rest.items()}
    return np.concatenate([first[None], rest])


@dataclass
class Rollout:
    """T steps of B copies x N agents, as arrays.

    ``obs`` holds T + 1 rows: row t + 1 is what the agents saw after step t, row 0 what
    they saw before the first. A copy whose episode ended at step t has its final
    observation in row t + 1 and its next episode's first one in ``starts[(t, b)]``
    (B-row structure); ``summaries[(t, b)]`` is the ended episode's infos summary. So
    an episode's observations are a slice of the rows, but for the first one of an
    episode that began inside the rollout.
    """

    obs: Any  # (T+1, B, N, ...) array or dict of them
    actions: np.ndarray  # (T, B, N, *action_shape), as sampled (before unsquashing)
    rewards: np.ndarray  # (T, B, N) float32
    extra: dict[str, np.ndarray]  # (T, B, N, ...) extra model outputs
    terminated: np.ndarray  # (T, B) bool
    truncated: np.ndarray  # (T, B) bool
    starts: dict[tuple[int, int], Any] = field(default_factory=dict)
    summaries: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)


@dataclass
class EpisodeRecord:
    """What the episode metrics need of a finished episode, over all its chunks."""

    length: int
    agent_returns: np.ndarray  # (N,) float64
    seconds: float


@dataclass
class EpisodeChunk:
    """One episode (chunk) cut from a rollout, and where it came from."""

    episode: Any  # MultiAgentEpisode
    copy: int
    done: bool
    record: EpisodeRecord | None = None  # set when done


class EpisodeTally:
    """Each copy's running episode return per agent and wall time, across fragments.

    What RLlib's ``get_metrics`` reads from an episode's earlier chunks, kept as
    arrays so that the runner need not keep those chunks (and the rollout memory
    they share) until the episode ends.
    """

    def __init__(self, copies: int, agents: int) -> None:
        self.returns = np.zeros((copies, agents))
        self.seconds = np.zeros(copies)

    def reset(self) -> None:
        """Every copy starts a new episode."""
        self.returns[:] = 0.0
        self.seconds[:] = 0.0

    def add(self, rollout: Rollout, env_t: np.ndarray, seconds: float) -> list[EpisodeRecord]:
        """Fold in a rollout of `seconds` (copy b had run ``env_t[b]`` steps before it).

        Returns the records of the episodes that ended in it, ordered by copy, then step
        (the order of :func:`episodes_from_rollout`'s finished chunks).
        """
        copies = np.arange(len(env_t))
        totals = np.cumsum(rollout.rewards, axis=0, dtype=np.float64)  # (T, B, N)
        steps, copy = np.nonzero(rollout.terminated | rollout.truncated)
        order = np.lexsort((steps, copy))
        last = np.full(len(env_t), -1)
        records = []
        for t, b in zip(steps[order].tolist(), copy[order].tolist()):
            before = last[b]
            returns = totals[t, b] + (self.returns[b] if before < 0 else -totals[before, b])
            length = t - before + (int(env_t[b]) if before < 0 else 0)
            records.append(EpisodeRecord(length, returns, float(self.seconds[b]) + seconds))
            last[b] = t
        ended = last >= 0
        self.returns[ended] = 0.0
        self.seconds[ended] = 0.0
        self.returns += totals[-1] - np.where(
            ended[:, None], totals[np.maximum(last, 0), copies], 0.0
        )
        self.seconds += seconds
        return records


def episodes_from_rollout(
    rollout: Rollout,
    *,
    episode_ids: list[str],
    env_t: np.ndarray,
    agent_ids: list[str],
    module_ids: list[str],
    observation_spaces: dict[str, gym.Space],
    action_spaces: dict[str, gym.Space],
    mapping_fn: Any,
    start_time: float,
) -> list[EpisodeChunk]:
    """Cut a rollout into ``MultiAgentEpisode`` chunks, numpy'ized, one pass per copy.

    Every agent acts every step (the platform's cores keep all agents alive), so each
    agent's ``SingleAgentEpisode`` holds the same steps. ``episode_ids[b]`` and
    ``env_t[b]`` are copy b's running episode id and its step count before the rollout;
    both are updated in place (a new id, step 0 once an episode ends).
    """

    def with_struct(space: gym.Space) -> tuple[gym.Space, Any]:
        return space, get_base_struct_from_space(space)

    obs_spaces = {a: with_struct(s) for a, s in observation_spaces.items()}
    act_spaces = {a: with_struct(s) for a, s in action_spaces.items()}
    reward_space = with_struct(_REWARDS_BOX_SPACE)
    steps, copies = rollout.terminated.shape
    done = rollout.terminated | rollout.truncated
    now = time.perf_counter()
    chunks: list[EpisodeChunk] = []
    ended = done.any(axis=0).tolist()
    for b in range(copies):
        ends = np.flatnonzero(done[:, b]).tolist() if ended[b] else []
        if not ends or ends[-1] != steps - 1:
            ends.append(steps - 1)
        start = 0
        for end in ends:
            finished = bool(done[end, b])
            length = end - start + 1
            t0, rows = int(env_t[b]), slice(start, end + 1)
            if start and done[start - 1, b]:  # began after a reset inside the rollout
                obs = _prepend(
                    rollout.starts[(start - 1, b)],
                    _take(rollout.obs, (slice(start + 1, end + 2), b)),
                )
            else:  # a view: copy b's rows start to end + 1
                obs = _take(rollout.obs, (slice(start, end + 2), b))
            episode = MultiAgentEpisode(
                id_=episode_ids[b],
                observation_space=observation_spaces,
                action_space=action_spaces,
                agent_to_module_mapping_fn=mapping_fn,
                agent_module_ids=dict(zip(agent_ids, module_ids)),
                env_t_started=t0,
            )
            # The flags the stock runner's episodes get: once every agent is done, RLlib
            # marks the episode terminated, also when the env truncated it (a time limit;
            # MultiAgentEpisode.add_env_step), so both samplers' learners bootstrap alike.
            term, trunc = finished, bool(rollout.truncated[end, b])
            summary = rollout.summaries.get((end, b)) if finished else None
            extra = {k: v[rows, b] for k, v in rollout.extra.items()}
            actions, rewards = rollout.actions[rows, b], rollout.rewards[rows, b]
            for n, (agent, module) in enumerate(zip(agent_ids, module_ids)):
                # One empty dict for every step but the last (per-step infos are empty).
                infos = [{}] * length + [dict(summary) if summary is not None else {}]
                episode.agent_episodes[agent] = _single_agent_episode(
                    f"{episode_ids[b]}_{n}",
                    observations=_buffer(_take(obs, (slice(None), n)), *obs_spaces[agent]),
                    infos=_buffer(infos),
                    actions=_buffer(actions[:, n], *act_spaces[agent]),
                    rewards=_buffer(rewards[:, n], *reward_space),
                    extra_model_outputs={k: _buffer(v[:, n]) for k, v in extra.items()},
                    terminated=term,
                    truncated=trunc,
                    t_started=t0,
                    agent_id=agent,
                    module_id=module,
                    multi_agent_episode_id=episode_ids[b],
                    observation_space=observation_spaces[agent],
                    action_space=action_spaces[agent],
                )
                # Absolute agent steps in a list, as the stock episodes keep them.
                episode.env_t_to_agent_t[agent] = _buffer(list(range(t0, t0 + length + 1)))
                episode.agent_t_started[agent] = t0
            episode.env_t = t0 + length
            episode.is_terminated, episode.is_truncated = term, trunc
            episode._start_time, episode._last_step_time = start_time, now
            chunks.append(EpisodeChunk(episode, b, finished))
            if finished:
                episode_ids[b] = _new_id()
                env_t[b] = 0
            else:
                env_t[b] += length
            start = end + 1
    return chunks


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while a block runs; its new objects become old.

    Building thousands of episode objects would otherwise trigger many collections that
    scan them all, none of them cyclic garbage (they die by reference count once the
    learner is done with them). Once the block ends, its objects are moved to the
    oldest generation without a scan (``gc.freeze()`` then ``gc.unfreeze()``: a
    promotion in constant time), as the first young collection after it would have
    scanned them all: 10% of a 1024-copy fragment's time. Skipped when something else
    keeps objects frozen (the promotion would unfreeze them too); when nested, the
    outer block promotes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _single_agent_episode(
    id_: str,
    *,
    observations: InfiniteLookbackBuffer,
    infos: InfiniteLookbackBuffer,
    actions: InfiniteLookbackBuffer,
    rewards: InfiniteLookbackBuffer,
    extra_model_outputs: dict[str, InfiniteLookbackBuffer],
    terminated: bool,
    truncated: bool,
    t_started: int,
    agent_id: str,
    module_id: str,
    multi_agent_episode_id: str,
    observation_space: gym.Space,
    action_space: gym.Space,
) -> SingleAgentEpisode:
    """A ``SingleAgentEpisode`` of finalized buffers, every slot set, without its constructor.

    The constructor re-derives every buffer's space struct and validates the lengths
    (together a third of a 1024-copy rollout fragment's time); the rollout's arrays are
    consistent by construction (``tests/unit/test_sampling.py`` validates the result and
    checks that every slot is set). The slots it leaves unset get its defaults.
    """
    episode = SingleAgentEpisode.__new__(SingleAgentEpisode)
    episode.id_ = id_
    episode.observations = observations
    episode.infos = infos
    episode.actions = actions
    episode.rewards = rewards
    episode.extra_model_outputs = extra_model_outputs
    episode.is_terminated = terminated
    episode.is_truncated = truncated
    episode.t_started = t_started
    episode.t = t_started + len(rewards.data)
    episode.agent_id = agent_id
    episode.module_id = module_id
    episode.multi_agent_episode_id = multi_agent_episode_id
    episode._observation_space = observation_space
    episode._action_space = action_space
    episode._custom_data = {}
    episode._start_time = None
    episode._last_step_time = None
    episode._last_added_observation = None
    episode._last_added_infos = None
    return episode


def _buffer(data: Any, space: gym.Space | None = None, struct: Any = None) -> Any:
    """A finalized ``InfiniteLookbackBuffer`` (no lookback) without its constructor's cost."""
    buffer = InfiniteLookbackBuffer.__new__(InfiniteLookbackBuffer)
    buffer.data = data
    buffer.lookback = 0
    buffer.finalized = not isinstance(data, list)
    buffer._space = space
    buffer._space_struct = struct
    return buffer


def _new_id() -> str:
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- sampler


class BlockPool:
    """Rollout observation blocks, handed out again once nothing else holds them.

    A rollout's episodes are views of its block, so the block is free when they (and
    any view or tensor made from them) are gone, which its arrays' reference counts
    tell. Reusing it saves the first-write page faults of fresh memory (5% of a
    1024-copy fragment's time on the development machine). A block still held (by a
    replay buffer keeping episodes, say) is never handed out; the pool remembers at
    most `size` blocks.
    """

    def __init__(self, make: Any, size: int = 2) -> None:
        self._make = make
        self._size = size
        self._blocks: list[tuple[Any, tuple[np.ndarray, ...], list[int]]] = []

    @staticmethod
    def _refs(arrays: tuple[np.ndarray, ...]) -> list[int]:
        return [sys.getrefcount(array) for array in arrays]

    def take(self, rows: int) -> Any:
        """A block of `rows` rows (``make(rows)``), a free one if the pool has it."""
        for block, arrays, free in self._blocks:
            if len(arrays[0]) == rows and self._refs(arrays) == free:
                return block
        block = self._make(rows)
        arrays = tuple(block.values()) if isinstance(block, dict) else (block,)
        # What the counts are when only the pool holds the block (as in the loop above).
        self._blocks = [*self._blocks[1 - self._size :], (block, arrays, [])]
        self._blocks[-1][2].extend(self._refs(arrays))
        return block


class BatchedSampler:
    """The sampling loop over a :class:`BatchedMultiAgentEnv`, without Ray.

    ``act(obs, explore) -> (actions (B, N, ...), extra {name: (B, N, ...)})`` is the
    policy; :class:`BatchedEnvRunner` passes its RLModules' batched forward pass.
    """

    def __init__(self, env: BatchedMultiAgentEnv, rng: np.random.Generator) -> None:
        self.env = env
        self.rng = rng
        self._obs: Any = None
        self._fresh: Any = None  # room for the observations of copies just reset
        self._blocks = BlockPool(env.empty)
        self.needs_reset = True

    def reset(self) -> None:
        """Start new episodes in every copy."""
        self.env.core.reset(self.rng)
        self.env.rewards.start()
        self._obs = self.env.observe()
        self.needs_reset = False

    def run(
        self,
        act: Any,
        steps: int,
        explore: bool,
        env_actions: Any,
    ) -> Rollout:
        """Take `steps` batched steps; ``env_actions(actions)`` maps sampled to env actions."""
        env, core = self.env, self.env.core
        if self.needs_reset:
            self.reset()
        # Observations are written in place into one (T+1, B, N, ...) block: no
        # per-step arrays to stack afterwards, no per-step allocation.
        obs_rows = self._blocks.take(steps + 1)
        _assign(obs_rows, 0, self._obs)
        if self._fresh is None:
            self._fresh = env.empty()
        current = _take(obs_rows, 0)  # what the agents act on
        actions, rewards, terms, truncs = [], [], [], []
        extras: dict[str, list[np.ndarray]] = defaultdict(list)
        starts: dict[tuple[int, int], Any] = {}
        summaries: dict[tuple[int, int], dict[str, Any]] = {}
        for t in range(steps):
            sampled, extra = act(current, explore)
            to_env = env_actions(sampled)
            result = core.step(to_env, self.rng)
            reward = env.rewards.compose(result, to_env, env.agent_action_space)
            done = result.terminated | result.truncated
            current = env.observe(out=_take(obs_rows, t + 1))  # final ones included
            if done.any():
                rows = np.flatnonzero(done)
                for b, summary in zip(rows.tolist(), env.rewards.summaries(rows)):
                    summaries[(t, b)] = summary
                core.reset(self.rng, mask=done)
                env.rewards.start(done)
                # Every copy's observation again: the others' are unchanged.
                current = env.observe(out=self._fresh)
                first = _take(current, rows)  # a copy
                for i, b in enumerate(rows.tolist()):
                    starts[(t, b)] = _take(first, i)
            actions.append(sampled)
            rewards.append(reward)
            terms.append(result.terminated.copy())
            truncs.append(result.truncated.copy())
            for k, v in extra.items():
                extras[k].append(v)
        self._obs = _copy(current)
        return Rollout(
            obs=obs_rows,
            actions=np.stack(actions),
            rewards=np.stack(rewards),
            extra={k: np.stack(v) for k, v in extras.items()},
            terminated=np.stack(terms),
            truncated=np.stack(truncs),
            starts=starts,
            summaries=summaries,
        )


# --------------------------------------------------------------------------- actions

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def draw_actions(
    dist_cls: type, inputs: np.ndarray, explore: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Actions (and their log-probs when exploring) from RLlib's two common distributions.

    ``TorchDiagGaussian`` (inputs: means, then log-stds) and ``TorchCategorical``
    (inputs: logits), computed in numpy on the rollout's generator: a 1024-copy step
    draws 5,000 actions at once, where torch's distribution objects cost more than the
    arithmetic. Not exploring gives what ``to_deterministic()`` gives (the mean, the
    argmax). None for any other class (the caller asks the distribution itself).
    """
    if dist_cls is TorchDiagGaussian:
        mean, log_std = np.split(inputs, 2, axis=-1)
        if not explore:
            return mean, None
        noise = rng.standard_normal(mean.shape, dtype=np.float32)
        actions = mean + np.exp(log_std) * noise
        logp = -(0.5 * np.square(noise) + log_std).sum(-1) - mean.shape[-1] * _LOG_SQRT_2PI
        return actions, logp.astype(np.float32)
    if dist_cls is TorchCategorical:
        if not explore:
            return inputs.argmax(-1), None
        shifted = inputs - inputs.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        gumbel = -np.log(-np.log(rng.random(inputs.shape, dtype=np.float32) + 1e-20))
        actions = (log_probs + gumbel).argmax(-1)
        logp = np.take_along_axis(log_probs, actions[:, None], axis=-1)[:, 0]
        return actions, logp.astype(np.float32)
    return None


# --------------------------------------------------------------------------- env runner


class BatchedEnvRunner(MultiAgentEnvRunner):
    """A ``MultiAgentEnvRunner`` whose env is B copies of a batched core (see module doc).

    ``num_envs_per_env_runner`` is B. Weights, state, checkpoints, metrics (via the
    stock ``get_metrics``) and restarts are the stock runner's.
    """

    def make_env(self) -> None:  # noqa: D102
        if self.env is not None:
            self.env.close()
        env_ctx = self.config.env_config
        if not isinstance(env_ctx, EnvContext):
            env_ctx = EnvContext(
                env_ctx,
                worker_index=self.worker_index,
                num_workers=self.config.num_env_runners,
            )
        if not isinstance(self.config.env, type):
            raise ValueError(f"the batched sampler needs an env class, got {self.config.env!r}")
        self.env = BatchedMultiAgentEnv(
            self.config.env, dict(env_ctx), self.config.num_envs_per_env_runner
        )
        self.num_envs = self.env.num_envs
        seed = self.config.seed
        entropy = None if seed is None else [int(seed), int(self.worker_index or 0)]
        self._sampler = BatchedSampler(self.env, np.random.default_rng(entropy))
        # Exploration draws its own stream: the env's dynamics do not depend on them.
        self._action_rng = np.random.default_rng(None if entropy is None else [*entropy, 1])
        self._agents = list(self.env.possible_agents)
        probe = MultiAgentEpisode()
        self._modules = [self.config.policy_mapping_fn(a, probe) for a in self._agents]
        self._module_agents: dict[str, Any] = defaultdict(list)
        for n, module in enumerate(self._modules):
            self._module_agents[module].append(n)
        # A module acting for every agent reads the arrays as they are (no copy).
        self._module_agents = {
            m: slice(None) if len(v) == len(self._agents) else np.array(v)
            for m, v in self._module_agents.items()
        }
        self._episode_ids = [_new_id() for _ in range(self.num_envs)]
        self._env_t = np.zeros(self.num_envs, dtype=np.int64)
        self._tally = EpisodeTally(self.num_envs, len(self._agents))
        self._finished: list[EpisodeRecord] = []
        self._needs_initial_reset = True
        log.info(
            "batched sampler: %d copies x %d agents of %s (worker %s)",
            self.num_envs,
            len(self._agents),
            type(self.env.core).__name__,
            self.worker_index,
        )
        make_callback(
            "on_environment_created",
            callbacks_objects=self._callbacks,
            callbacks_functions=self.config.callbacks_on_environment_created,
            kwargs=dict(
                env_runner=self,
                metrics_logger=self.metrics,
                env=self.env,
                env_context=env_ctx,
            ),
        )

    def _act(self, obs: Any, explore: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One forward pass per module over every (copy, agent) it acts for."""
        actions, extra = None, {}
        t = self.num_env_steps_sampled_lifetime
        with torch.no_grad():
            for module_id, agents in self._module_agents.items():
                module = self.module[module_id]
                part = _take(obs, (slice(None), agents))
                b, n = part["obs"].shape[:2] if isinstance(part, dict) else part.shape[:2]
                flat = (
                    {k: torch.from_numpy(v.reshape(b * n, *v.shape[2:])) for k, v in part.items()}
                    if isinstance(part, dict)
                    else torch.from_numpy(part.reshape(b * n, *part.shape[2:]))
                )
                batch = {Columns.OBS: flat}
                if explore:
                    out = module.forward_exploration(batch, t=t)
                    dist_cls = module.get_exploration_action_dist_cls()
                else:
                    out = module.forward_inference(batch)
                    dist_cls = module.get_inference_action_dist_cls()
                if Columns.ACTIONS in out:
                    # The module chose its actions itself (the value-based modules'
                    # epsilon-greedy); RLlib's GetActions connector keeps them as well.
                    sampled = out[Columns.ACTIONS].numpy()
                    columns = {}
                else:
                    sampled, columns = self._draw(
                        dist_cls, out[Columns.ACTION_DIST_INPUTS], explore
                    )
                values = sampled.reshape(b, n, *sampled.shape[1:])
                if actions is None:
                    actions = np.empty(
                        (b, len(self._agents), *values.shape[2:]), dtype=values.dtype
                    )
                actions[:, agents] = values
                for k, v in columns.items():
                    v = v.reshape(b, n, *v.shape[1:])
                    if k not in extra:
                        extra[k] = np.empty((b, len(self._agents), *v.shape[2:]), v.dtype)
                    extra[k][:, agents] = v
        extra[WEIGHTS_SEQ_NO] = np.full(actions.shape[:2], self._weights_seq_no)
        return actions, extra

    def _draw(
        self, dist_cls: type, logits: torch.Tensor, explore: bool
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions from a module's distribution inputs, and the columns episodes keep."""
        inputs = logits.numpy()
        drawn = draw_actions(dist_cls, inputs, explore, self._action_rng)
        if drawn is None:  # another distribution: ask it
            dist = dist_cls.from_logits(logits)
            if not explore:
                dist = dist.to_deterministic()
            sampled = dist.sample()
            drawn = sampled.numpy(), dist.logp(sampled).numpy() if explore else None
        sampled, logp = drawn
        columns = {Columns.ACTION_DIST_INPUTS: inputs}
        if explore:
            columns[Columns.ACTION_LOGP] = logp
        return sampled, columns

    def _env_actions(self, actions: np.ndarray) -> np.ndarray:
        space = self.env.agent_action_space
        if self.config.normalize_actions:
            return unsquash_action(actions, space)
        if self.config.clip_actions:
            return clip_action(actions, space)
        return actions

    def _sample(
        self,
        *,
        num_timesteps: int | None = None,
        num_episodes: int | None = None,
        explore: bool,
        random_actions: bool = False,
        force_reset: bool = False,
    ) -> list[Any]:
        if random_actions:
            raise NotImplementedError("the batched sampler does not sample random actions")
        if num_episodes is not None:
            return self._sample_episodes(num_episodes, explore)
        if force_reset or self._needs_initial_reset:
            self._restart()
        steps = max(1, math.ceil(num_timesteps / self.num_envs))
        if self.config.count_steps_by == "agent_steps":
            steps = max(1, math.ceil(steps / len(self._agents)))
        with _gc_paused():  # thousands of episode objects, none of them cyclic garbage
            chunks = self._rollout(steps, explore)
            self._finish(chunks)
        return [chunk.episode for chunk in chunks]

    def _sample_episodes(self, num_episodes: int, explore: bool) -> list[Any]:
        """Whole episodes from a fresh start: the first `num_episodes` to finish."""
        self._restart()
        done: list[EpisodeChunk] = []
        parts: dict[int, list[Any]] = defaultdict(list)
        while len(done) < num_episodes:
            for chunk in self._rollout(1, explore):
                if chunk.done:
                    chunk.episode = _concat(parts.pop(chunk.copy, []), chunk.episode)
                    done.append(chunk)
                else:
                    parts[chunk.copy].append(chunk.episode)
        self._needs_initial_reset = True
        done = done[:num_episodes]
        self._finish(done)
        return [chunk.episode for chunk in done]

    def _restart(self) -> None:
        self._sampler.reset()
        self._episode_ids = [_new_id() for _ in range(self.num_envs)]
        self._env_t[:] = 0
        self._tally.reset()
        self._needs_initial_reset = False

    def _rollout(self, steps: int, explore: bool) -> list[EpisodeChunk]:
        start = time.perf_counter()
        rollout = self._sampler.run(self._act, steps, explore, self._env_actions)
        records = self._tally.add(rollout, self._env_t, time.perf_counter() - start)
        with _gc_paused():  # ~10 objects per agent and chunk, none of them cyclic garbage
            chunks = episodes_from_rollout(
                rollout,
                episode_ids=self._episode_ids,
                env_t=self._env_t,
                agent_ids=self._agents,
                module_ids=self._modules,
                observation_spaces=self.env.single_observation_spaces,
                action_spaces=self.env.single_action_spaces,
                mapping_fn=self.config.policy_mapping_fn,
                start_time=start,
            )
        finished = [chunk for chunk in chunks if chunk.done]
        for chunk, record in zip(finished, records, strict=True):
            chunk.record = record
        self._count(steps, len(finished))
        return chunks

    def _finish(self, chunks: list[EpisodeChunk]) -> None:
        """Keep the finished episodes' records for ``get_metrics``; run ``on_episode_end``."""
        self._finished.extend(chunk.record for chunk in chunks if chunk.done)
        self._episode_end_callbacks(chunks)

    def get_metrics(self) -> dict[str, Any]:
        """The stock runner's episode metrics, from the records of the episodes finished.

        Every episode metric is a windowed mean, min or max over the last
        ``metrics_num_episodes_for_smoothing / num_env_runners`` episodes, so only
        that many of the latest records are logged (a 1024-copy runner finishes
        hundreds of episodes per call): the reduced values are the same.
        """
        window = max(
            1,
            math.ceil(
                self.config.metrics_num_episodes_for_smoothing / (self.config.num_env_runners or 1)
            ),
        )
        for record in self._finished[-window:]:
            agents = {a: float(r) for a, r in zip(self._agents, record.agent_returns.tolist())}
            modules: dict[str, float] = defaultdict(float)
            for agent, module in zip(self._agents, self._modules):
                modules[module] += agents[agent]
            self._log_episode_metrics(
                record.length,
                float(record.agent_returns.sum()),
                record.seconds,
                agents,
                dict(modules),
                {agent: record.length for agent in self._agents},
            )
        self._finished.clear()
        return self.metrics.reduce()

    def _count(self, steps: int, episodes: int) -> None:
        env_steps = steps * self.num_envs
        self.num_env_steps_sampled_lifetime += env_steps
        m = self.metrics
        m.log_value(NUM_ENV_STEPS_SAMPLED, env_steps, reduce="sum")
        m.log_value(
            NUM_ENV_STEPS_SAMPLED_LIFETIME, env_steps, reduce="lifetime_sum",
            with_throughput=True,
        )  # fmt: skip
        if episodes:
            m.log_value(NUM_EPISODES, episodes, reduce="sum")
            m.log_value(NUM_EPISODES_LIFETIME, episodes, reduce="lifetime_sum")
        for agent, module in zip(self._agents, self._modules):
            m.log_value((NUM_AGENT_STEPS_SAMPLED, agent), env_steps, reduce="sum")
            m.log_value((NUM_AGENT_STEPS_SAMPLED_LIFETIME, agent), env_steps, reduce="lifetime_sum")
            m.log_value((NUM_MODULE_STEPS_SAMPLED, module), env_steps, reduce="sum")
            m.log_value(
                (NUM_MODULE_STEPS_SAMPLED_LIFETIME, module), env_steps, reduce="lifetime_sum"
            )
        log_env_steps = getattr(self, "_log_env_steps", None)
        metric = getattr(self, "_metrics_num_env_steps_sampled", None)
        if log_env_steps is not None and metric is not None:
            log_env_steps(metric=metric, num_steps=env_steps)

    def _episode_end_callbacks(self, chunks: list[EpisodeChunk]) -> None:
        for chunk in chunks:
            if not chunk.done:
                continue
            make_callback(
                "on_episode_end",
                callbacks_objects=self._callbacks,
                callbacks_functions=self.config.callbacks_on_episode_end,
                kwargs=dict(
                    episode=chunk.episode,
                    env_runner=self,
                    metrics_logger=self.metrics,
                    env=self.env,
                    rl_module=self.module,
                    env_index=chunk.copy,
                    prev_episode_chunks=[],  # not kept: see the module doc
                ),
            )


def _concat(parts: list[Any], last: Any) -> Any:
    """Chunks of one episode as one episode (``MultiAgentEpisode.concat_episode``)."""
    if not parts:
        return last
    first = parts[0]
    for part in [*parts[1:], last]:
        first.concat_episode(part)
    return first
