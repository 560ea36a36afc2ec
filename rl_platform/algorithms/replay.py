"""Replay of joint multi-agent transitions rebuilt from RLlib's ``MultiAgentEpisode`` chunks.

Centralized training (QMIX/VDN mixers, MADDPG critics) needs every agent's observation,
action and reward of the same env step side by side, plus the global state. RLlib's
multi-agent replay buffers store per-module, per-agent rows instead, so
:class:`JointReplayBuffer` rebuilds joint transitions from the episodes the env runners
return. Actions keep their space's shape and dtype: integer indices for ``Discrete``,
float vectors for ``Box``.

:class:`SequenceReplayBuffer` (recurrent IQL/VDN/QMIX) stores the same joint data cut into
fixed-length, zero-padded sequences, each with the agents' recurrent state at its start.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from rl_platform.config import ConfigError

if TYPE_CHECKING:
    from rl_platform.config import ExperimentConfig

# Metric key: gradient updates so far (learner updates/s = its change / time).
NUM_LEARNER_UPDATES_LIFETIME = "num_learner_updates_lifetime"

ONE_LEARNER_REASON = (
    "{algorithm} samples one joint replay buffer in the algorithm's process and makes "
    "many small gradient steps per iteration (minibatches of tens to hundreds of "
    "transitions on networks of a few thousand parameters): data-parallel learners "
    "would each train on a shard of an already small minibatch and wait for an "
    "all-reduce between processes at every step, slower than one learner at this scale"
)


def check_one_learner(experiment: ExperimentConfig) -> None:
    """Refuse ``resources.num_learners`` above 1 for a joint-replay algorithm, saying why.

    Raises:
        ConfigError: ``resources.num_learners`` is 2 or more.
    """
    count = experiment.resources.num_learners
    if count > 1:
        reason = ONE_LEARNER_REASON.format(algorithm=experiment.algorithm.id.upper())
        raise ConfigError(
            f"{experiment.name}: resources.num_learners = {count}: {reason}. Use 0 "
            "(or 1) learner and scale sampling with resources.num_env_runners."
        )


class JointReplayBuffer:
    """A ring buffer of joint transitions, filled from RLlib multi-agent episode chunks.

    Arrays (capacity, ...): ``obs``/``next_obs`` (N, obs_dim), ``actions`` (N,: int64
    indices of Discrete actions) or (N, action_dim: float32 Box actions),
    ``rewards`` (N,), ``mask`` (N,: the agent acted at this step), ``state`` /
    ``next_state`` (state_dim,), ``terminated`` (the episode ended for good: no
    bootstrapping) and ``agent_terminated`` (N,: the agent's own episode ended). When the
    agents' Dict observations carry an ``"action_mask"``, also ``action_mask`` and
    ``next_action_mask`` (N, n_actions: float32 0/1 of the observation and the next one;
    all 0 where an agent has no observation, which :func:`~rl_platform.algorithms.mixers.allowed`
    reads as "all allowed").

    An agent that leaves early (PettingZoo envs that drop agents) is masked after its
    last step; agents are assumed present from each episode's start.
    """

    def __init__(self, capacity: int, agent_ids: list[str], state_dim: int, seed: int | None):
        self.capacity = capacity
        self.agent_ids = list(agent_ids)
        self.state_dim = state_dim
        self._rng = np.random.default_rng(seed)
        self._data: dict[str, np.ndarray] | None = None
        self._next = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def _allocate(self, sample: dict[str, np.ndarray]) -> None:
        self._data = {
            key: np.zeros((self.capacity, *value.shape[1:]), dtype=value.dtype)
            for key, value in sample.items()
        }

    def add(self, transitions: dict[str, np.ndarray]) -> None:
        """Append transitions (arrays with a leading time axis), overwriting the oldest."""
        count = len(transitions["actions"])
        if count == 0:
            return
        if self._data is None:
            self._allocate(transitions)
        rows = (self._next + np.arange(count)) % self.capacity
        for key, value in transitions.items():
            self._data[key][rows] = value
        self._next = int((self._next + count) % self.capacity)
        self.size = min(self.size + count, self.capacity)

    def add_episodes(self, episodes: list[Any]) -> int:
        """Add every transition of these ``MultiAgentEpisode`` chunks; returns how many."""
        added = 0
        for episode in episodes:
            transitions = self.joint_transitions(episode)
            if transitions is not None:
                self.add(transitions)
                added += len(transitions["actions"])
        return added

    def joint_transitions(self, episode: Any) -> dict[str, np.ndarray] | None:
        """The (T, ...) joint transitions of one episode chunk, or None when it is empty."""
        steps = len(episode)
        if steps == 0:
            return None
        n = len(self.agent_ids)
        obs_dim = None
        action_shape: tuple[int, ...] = ()
        action_dtype: Any = np.int64
        mask_dim = None
        per_agent = []
        for agent in self.agent_ids:
            single = episode.agent_episodes.get(agent)
            length = 0 if single is None else len(single)
            if length > steps:
                raise ValueError(f"agent {agent} has more steps than its episode")
            if length == 0:
                per_agent.append(None)
                continue
            obs = single.get_observations(slice(0, length + 1))
            actions = np.asarray(single.get_actions(slice(0, length)))
            rewards = np.asarray(single.get_rewards(slice(0, length)), dtype=np.float32)
            local, state = (obs["obs"], obs["state"]) if isinstance(obs, dict) else (obs, None)
            action_mask = obs.get("action_mask") if isinstance(obs, dict) else None
            if action_mask is not None:
                action_mask = np.asarray(action_mask, np.float32)
                mask_dim = action_mask.shape[-1]
            obs_dim = local.shape[-1]
            action_shape = actions.shape[1:]
            if not np.issubdtype(actions.dtype, np.integer):
                action_dtype = np.float32
            per_agent.append(
                (length, local, state, actions, rewards, single.is_terminated, action_mask)
            )
        if obs_dim is None:
            return None

        out = {
            "obs": np.zeros((steps, n, obs_dim), np.float32),
            "next_obs": np.zeros((steps, n, obs_dim), np.float32),
            "actions": np.zeros((steps, n, *action_shape), action_dtype),
            "rewards": np.zeros((steps, n), np.float32),
            "mask": np.zeros((steps, n), np.float32),
            "agent_terminated": np.zeros((steps, n), np.float32),
            "state": np.zeros((steps, self.state_dim), np.float32),
            "next_state": np.zeros((steps, self.state_dim), np.float32),
            "terminated": np.zeros(steps, np.float32),
        }
        if mask_dim is not None:
            out["action_mask"] = np.zeros((steps, n, mask_dim), np.float32)
            out["next_action_mask"] = np.zeros((steps, n, mask_dim), np.float32)
        have_state = np.zeros(steps + 1, dtype=bool)
        states = np.zeros((steps + 1, self.state_dim), np.float32)
        for i, data in enumerate(per_agent):
            if data is None:
                continue
            length, local, state, actions, rewards, terminated, action_mask = data
            if action_mask is not None:
                out["action_mask"][:length, i] = action_mask[:length]
                out["next_action_mask"][:length, i] = action_mask[1 : length + 1]
            out["obs"][:length, i] = local[:length]
            out["next_obs"][:length, i] = local[1 : length + 1]
            out["actions"][:length, i] = actions
            out["rewards"][:length, i] = rewards
            out["mask"][:length, i] = 1.0
            if terminated:
                out["agent_terminated"][length - 1, i] = 1.0
            if state is not None:
                # The state part may carry the agent's one-hot id: keep the shared part.
                fresh = ~have_state[: length + 1]
                states[: length + 1][fresh] = state[: length + 1, : self.state_dim][fresh]
                have_state[: length + 1] = True
        out["state"] = states[:steps]
        out["next_state"] = states[1 : steps + 1]
        if episode.is_terminated:
            out["terminated"][-1] = 1.0
        return out

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """`batch_size` transitions drawn uniformly with replacement."""
        if self._data is None or self.size == 0:
            raise ValueError("the replay buffer is empty")
        rows = self._rng.integers(0, self.size, size=batch_size)
        return {key: value[rows] for key, value in self._data.items()}


# The key of a recurrent module's hidden state in its STATE_IN / STATE_OUT dicts.
HIDDEN = "h"


class SequenceReplayBuffer(JointReplayBuffer):
    """A ring buffer of fixed-length sequences of joint transitions, for recurrent agents.

    Each episode chunk from the env runners is cut into sequences of at most
    ``seq_len`` steps, zero-padded to ``seq_len``; a sequence never crosses an episode
    boundary (chunks do not). Arrays (capacity, ...), T = ``seq_len``:

    * ``obs`` (T + 1, N, obs_dim) and ``state`` (T + 1, state_dim): step t's observation
      and state at t, its next observation and next state at t + 1 (so one unroll of a
      recurrent network over T + 1 steps gives both Q(o_t) and Q(o_{t+1}));
    * ``actions``, ``rewards``, ``mask``, ``agent_terminated`` (T, N) and ``terminated``
      (T,), as in :class:`JointReplayBuffer`; ``valid`` (T,): 1 for real steps, 0 on
      padding;
    * ``action_mask`` (T + 1, N, n_actions), when the observations carry masks: aligned
      with ``obs``;
    * ``hidden0`` (N, hidden_dim): each agent's recurrent state before the sequence's
      first step: zeros at an episode's start, else the state the env runner's module
      had there (its ``STATE_OUT`` of the step before, read from the chunk or its
      lookback buffer; zeros if the runner recorded none).

    ``len()`` and ``sample()`` count sequences.
    """

    def __init__(
        self,
        capacity: int,
        agent_ids: list[str],
        state_dim: int,
        seed: int | None,
        seq_len: int,
        hidden_dim: int,
    ):
        super().__init__(capacity, agent_ids, state_dim, seed)
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.seq_len = seq_len
        self.hidden_dim = hidden_dim

    def add_episodes(self, episodes: list[Any]) -> int:
        """Add every sequence of these ``MultiAgentEpisode`` chunks; returns how many."""
        added = 0
        for episode in episodes:
            sequences = self.joint_sequences(episode)
            if sequences is not None:
                self.add(sequences)
                added += len(sequences["actions"])
        return added

    def hidden_states(self, episode: Any) -> np.ndarray:
        """(T, N, hidden_dim): each agent's recurrent state before each step of a chunk."""
        steps = len(episode)
        out = np.zeros((steps, len(self.agent_ids), self.hidden_dim), np.float32)
        for i, agent in enumerate(self.agent_ids):
            single = episode.agent_episodes.get(agent)
            if single is None or len(single) == 0:
                continue
            if "state_out" not in single.extra_model_outputs:
                continue
            outs = _hidden(single.get_extra_model_outputs(key="state_out"))
            length = len(single)
            out[1:length, i] = outs[: length - 1]
            if single.t_started > 0:
                before = single.get_extra_model_outputs(
                    key="state_out", indices=-1, neg_index_as_lookback=True
                )
                out[0, i] = _hidden(before)
        return out

    def joint_sequences(self, episode: Any) -> dict[str, np.ndarray] | None:
        """The (S, ...) padded sequences of one episode chunk, or None when it is empty."""
        flat = self.joint_transitions(episode)
        if flat is None:
            return None
        return cut_sequences(flat, self.hidden_states(episode), self.seq_len)


def _hidden(state: Any) -> np.ndarray:
    return np.asarray(state[HIDDEN] if isinstance(state, dict) else state, np.float32)


def cut_sequences(
    flat: dict[str, np.ndarray], hidden: np.ndarray, seq_len: int
) -> dict[str, np.ndarray]:
    """Cut one chunk's (T, ...) joint transitions into zero-padded (S, seq_len, ...) sequences.

    Args:
        flat: one episode chunk's arrays as :meth:`JointReplayBuffer.joint_transitions`
            returns them.
        hidden: (T, N, hidden_dim) the agents' recurrent states before each step.
        seq_len: the sequence length; the last sequence is padded (``valid`` 0).
    """
    steps = len(flat["actions"])
    starts = list(range(0, steps, seq_len))
    count = len(starts)

    def zeros(value: np.ndarray, length: int) -> np.ndarray:
        return np.zeros((count, length, *value.shape[1:]), value.dtype)

    out = {
        "obs": zeros(flat["obs"], seq_len + 1),
        "state": zeros(flat["state"], seq_len + 1),
        "valid": np.zeros((count, seq_len), np.float32),
        "hidden0": hidden[starts].astype(np.float32),
    }
    per_step = ("actions", "rewards", "mask", "agent_terminated", "terminated")
    for key in per_step:
        out[key] = zeros(flat[key], seq_len)
    masks = "action_mask" in flat
    if masks:
        out["action_mask"] = zeros(flat["action_mask"], seq_len + 1)
    for k, start in enumerate(starts):
        end = min(start + seq_len, steps)
        length = end - start
        out["obs"][k, 0] = flat["obs"][start]
        out["obs"][k, 1 : length + 1] = flat["next_obs"][start:end]
        out["state"][k, 0] = flat["state"][start]
        out["state"][k, 1 : length + 1] = flat["next_state"][start:end]
        if masks:
            out["action_mask"][k, 0] = flat["action_mask"][start]
            out["action_mask"][k, 1 : length + 1] = flat["next_action_mask"][start:end]
        out["valid"][k, :length] = 1.0
        for key in per_step:
            out[key][k, :length] = flat[key][start:end]
    return out


class JointReplayConfig(AlgorithmConfig):
    """What the config of every :class:`JointReplayAlgorithm` carries and checks.

    ``joint_agents`` (the env's agents, in order) and ``state_dim`` are filled by the
    algorithm's ``configure()``; subclasses set their own defaults for the replay settings.
    """

    algorithm_name: ClassVar[str] = "this algorithm"
    # The algorithm's hyperparameter model (rl_platform.config.algorithms): the defaults.
    params_model: ClassVar[type[BaseModel]]

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class)
        defaults = self.params_model()
        self.replay_buffer_capacity = defaults.replay_buffer_capacity
        self.num_steps_sampled_before_learning_starts = (
            defaults.num_steps_sampled_before_learning_starts
        )
        self.training_intensity: float | None = defaults.training_intensity
        self.joint_agents: list[str] = []
        self.state_dim = 0

    def _set_provided(self, settings: dict[str, Any]) -> None:
        """Set each keyword a ``training()`` override was given (``locals()`` of it)."""
        for name, value in settings.items():
            if name not in ("self", "kwargs", "__class__") and value is not NotProvided:
                setattr(self, name, value)

    @override(AlgorithmConfig)
    def validate(self) -> None:  # noqa: D102
        super().validate()
        if not self.joint_agents or self.state_dim <= 0:
            self._value_error(
                "set training(joint_agents=[...], state_dim=...) (rl_platform's builder does)"
            )
        if self.num_learners > 1:
            reason = ONE_LEARNER_REASON.format(algorithm=self.algorithm_name)
            self._value_error(f"num_learners = {self.num_learners}: {reason}")


class JointReplayAlgorithm(Algorithm):
    """The training loop IQL/VDN/QMIX and MADDPG share.

    Each iteration samples episodes from the env runners, stores their joint transitions
    in ``self.replay`` (made by :meth:`make_replay`), and after the warm-up runs this
    iteration's updates (``training_intensity`` replayed per sampled transition) as one
    learner call over minibatches of one replayed batch, keyed by the learner-only module
    ``batch_module_id``; then it pushes the agent modules' weights to the env runners.
    The config (a :class:`JointReplayConfig`) carries ``joint_agents``, ``state_dim``,
    ``replay_buffer_capacity``, ``num_steps_sampled_before_learning_starts`` and
    ``training_intensity``.
    """

    batch_module_id: ClassVar[str]

    def make_replay(self) -> JointReplayBuffer:
        """The replay buffer; subclasses may store sequences instead of transitions."""
        config = self.config
        return JointReplayBuffer(
            config.replay_buffer_capacity, config.joint_agents, config.state_dim, config.seed
        )

    @override(Algorithm)
    def setup(self, config: Any) -> None:  # noqa: D102
        super().setup(config)
        self.replay = self.make_replay()
        mapping = self.config.policy_mapping_fn
        self._agent_module_ids = sorted({mapping(a, None) for a in self.config.joint_agents})

    @override(Algorithm)
    def training_step(self) -> None:
        """Sample, store, then (after warm-up) replayed updates and a weight sync."""
        config = self.config
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                concat=True,
                sample_timeout_s=config.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        self.metrics.aggregate(runner_results, key=ENV_RUNNER_RESULTS)
        sampled = self.replay.add_episodes(episodes)
        now = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        if now < config.num_steps_sampled_before_learning_starts or not len(self.replay):
            return
        batch_size = config.train_batch_size_per_learner
        updates = 1
        if config.training_intensity is not None:
            updates = max(1, math.ceil(config.training_intensity * sampled / batch_size))
        # One learner call runs all of this iteration's updates as minibatches of one
        # replayed batch: RLlib's per-call overhead is far larger than a small update.
        replayed = self.replay.sample(batch_size * updates)
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            results = self.learner_group.update(
                batch=MultiAgentBatch(
                    {self.batch_module_id: SampleBatch(replayed)}, env_steps=batch_size * updates
                ),
                minibatch_size=batch_size,
                num_epochs=1,
                shuffle_batch_per_epoch=False,
                timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: now},
            )
        self.metrics.aggregate(results, key=LEARNER_RESULTS)
        self.metrics.log_value(NUM_LEARNER_UPDATES_LIFETIME, updates, reduce="lifetime_sum")
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=self._agent_module_ids,
                inference_only=True,
            )
