"""Rollouts as arrays and their cut into RLlib episodes (:func:`episodes_from_rollout`).

The rollout stays in arrays ``(T, B, N, ...)`` and becomes ``MultiAgentEpisode`` chunks
once per fragment, not once per step: views of the arrays, built without RLlib's
per-episode constructors and validation.
"""

from __future__ import annotations

import contextlib
import gc
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.env.single_agent_episode import _REWARDS_BOX_SPACE, SingleAgentEpisode
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer
from ray.rllib.utils.spaces.space_utils import get_base_struct_from_space


def take(struct: Any, index: Any) -> Any:
    """``struct[index]`` of an array or of each array of a dict."""
    if isinstance(struct, dict):
        return {k: v[index] for k, v in struct.items()}
    return struct[index]


def assign(struct: Any, index: Any, value: Any) -> None:
    """``struct[index] = value`` for an array or each array of a dict."""
    if isinstance(struct, dict):
        for k, v in struct.items():
            v[index] = value[k]
    else:
        struct[index] = value


def copy_struct(struct: Any) -> Any:
    """A copy of an array or of each array of a dict."""
    if isinstance(struct, dict):
        return {k: np.array(v) for k, v in struct.items()}
    return np.array(struct)


def stack_struct(rows: list[Any]) -> Any:
    """Rows of arrays (or of dicts of arrays, e.g. recurrent states) stacked on a new axis 0."""
    if rows and isinstance(rows[0], dict):
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    return np.stack(rows)


def prepend(first: Any, rest: Any) -> Any:
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
    extra: dict[str, Any]  # (T, B, N, ...) extra model outputs (a dict of them: STATE_OUT)
    terminated: np.ndarray  # (T, B) bool
    truncated: np.ndarray  # (T, B) bool
    starts: dict[tuple[int, int], Any] = field(default_factory=dict)
    summaries: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    # (T+1, B, N) bool, for cores whose agents leave mid-episode (None: all stay): row t
    # the agents acting at step t, row T those alive after the last step (where a copy
    # reset, its new episode's agents).
    alive: np.ndarray | None = None
    # Recurrent policies: {module output: (B, N, ...)} as before the first step (the
    # STATE_OUT of the step before), the lookback of chunks that continue an episode.
    extra_before: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpisodeRecord:
    """What the episode metrics need of a finished episode, over all its chunks."""

    length: int
    agent_returns: np.ndarray  # (N,) float64
    seconds: float
    agent_lengths: np.ndarray | None = None  # (N,) steps each agent acted; None: `length`


@dataclass
class EpisodeChunk:
    """One episode (chunk) cut from a rollout, and where it came from."""

    episode: Any  # MultiAgentEpisode
    copy: int
    done: bool
    record: EpisodeRecord | None = None  # set when done


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

    Without ``rollout.alive`` every agent acts every step (the platform's cores keep
    all agents alive), so each agent's ``SingleAgentEpisode`` holds the same steps. With
    it, an agent that left ends its ``SingleAgentEpisode`` (terminated) at the step it
    left, as the stock runner's episodes do, and has none in later chunks.
    ``episode_ids[b]`` and ``env_t[b]`` are copy b's running episode id and its step
    count before the rollout; both are updated in place (a new id, step 0 once an
    episode ends).
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
                obs = prepend(
                    rollout.starts[(start - 1, b)],
                    take(rollout.obs, (slice(start + 1, end + 2), b)),
                )
            else:  # a view: copy b's rows start to end + 1
                obs = take(rollout.obs, (slice(start, end + 2), b))
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
            extra = {k: take(v, (rows, b)) for k, v in rollout.extra.items()}
            # A continued episode's chunk looks back one step for its recurrent state.
            before = rollout.extra_before if start == 0 and t0 > 0 else {}
            actions, rewards = rollout.actions[rows, b], rollout.rewards[rows, b]
            acted, stays = [length] * len(agent_ids), None
            if rollout.alive is not None:  # agents that left act in a prefix of the steps
                acted = rollout.alive[rows, b].sum(axis=0).tolist()
                stays = rollout.alive[end + 1, b].tolist()
            for n, (agent, module) in enumerate(zip(agent_ids, module_ids)):
                steps_n = acted[n]
                if steps_n == 0:  # left in an earlier chunk
                    continue
                left = steps_n < length or (stays is not None and not finished and not stays[n])
                cut = slice(None) if steps_n == length else slice(steps_n)
                # One empty dict for every step but the last (per-step infos are empty).
                last = dict(summary) if summary is not None and not left else {}
                infos = [{}] * steps_n + [last]
                episode.agent_episodes[agent] = single_agent_episode(
                    f"{episode_ids[b]}_{n}",
                    observations=lookback_buffer(
                        take(obs, (slice(None) if steps_n == length else slice(steps_n + 1), n)),
                        *obs_spaces[agent],
                    ),
                    infos=lookback_buffer(infos),
                    actions=lookback_buffer(actions[cut, n], *act_spaces[agent]),
                    rewards=lookback_buffer(rewards[cut, n], *reward_space),
                    extra_model_outputs={
                        k: (
                            lookback_buffer(take(v, (cut, n)))
                            if k not in before
                            else lookback_buffer(
                                prepend(take(before[k], (b, n)), take(v, (cut, n))), lookback=1
                            )
                        )
                        for k, v in extra.items()
                    },
                    terminated=term or left,
                    truncated=trunc and not left,
                    t_started=t0,
                    agent_id=agent,
                    module_id=module,
                    multi_agent_episode_id=episode_ids[b],
                    observation_space=observation_spaces[agent],
                    action_space=action_spaces[agent],
                )
                # Absolute agent steps in a list, as the stock episodes keep them; an
                # agent that left skips the env steps after (RLlib's skip tag).
                steps_of = list(range(t0, t0 + steps_n + 1))
                if steps_n < length:
                    steps_of += [MultiAgentEpisode.SKIP_ENV_TS_TAG] * (length - steps_n)
                episode.env_t_to_agent_t[agent] = lookback_buffer(steps_of)
                episode.agent_t_started[agent] = t0
            episode.env_t = t0 + length
            episode.is_terminated, episode.is_truncated = term, trunc
            episode._start_time, episode._last_step_time = start_time, now
            chunks.append(EpisodeChunk(episode, b, finished))
            if finished:
                episode_ids[b] = new_id()
                env_t[b] = 0
            else:
                env_t[b] += length
            start = end + 1
    return chunks


@contextlib.contextmanager
def gc_paused():
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


def single_agent_episode(
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


def lookback_buffer(
    data: Any, space: gym.Space | None = None, struct: Any = None, lookback: int = 0
) -> Any:
    """A finalized ``InfiniteLookbackBuffer`` without its constructor's cost.

    ``lookback``: how many of the first rows of ``data`` are before the chunk (default none).
    """
    buffer = InfiniteLookbackBuffer.__new__(InfiniteLookbackBuffer)
    buffer.data = data
    buffer.lookback = lookback
    buffer.finalized = not isinstance(data, list)
    buffer._space = space
    buffer._space_struct = struct
    return buffer


def new_id() -> str:
    """A fresh episode id."""
    return uuid.uuid4().hex
