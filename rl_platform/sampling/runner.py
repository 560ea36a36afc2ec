"""The batched RLlib env runner (:class:`BatchedEnvRunner`); see :mod:`rl_platform.sampling`."""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from ray.rllib.callbacks.utils import make_callback
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
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
from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action
from ray.rllib.utils.torch_utils import FLOAT_MIN

from rl_platform.sampling.distributions import draw_actions
from rl_platform.sampling.env import BatchedMultiAgentEnv
from rl_platform.sampling.episodes import (
    EpisodeChunk,
    EpisodeRecord,
    episodes_from_rollout,
    gc_paused,
    new_id,
    take,
)
from rl_platform.sampling.sampler import BatchedSampler
from rl_platform.sampling.tally import EpisodeTally

log = logging.getLogger(__name__)


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
        self._episode_ids = [new_id() for _ in range(self.num_envs)]
        self._env_t = np.zeros(self.num_envs, dtype=np.int64)
        self._tally = EpisodeTally(self.num_envs, len(self._agents))
        self._finished: list[EpisodeRecord] = []
        self._needs_initial_reset = True
        self._reset_states()
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
                part = take(obs, (slice(None), agents))
                b, n = (
                    next(iter(part.values())).shape[:2]
                    if isinstance(part, dict)
                    else part.shape[:2]
                )
                flat = (
                    {k: torch.from_numpy(v.reshape(b * n, *v.shape[2:])) for k, v in part.items()}
                    if isinstance(part, dict)
                    else torch.from_numpy(part.reshape(b * n, *part.shape[2:]))
                )
                batch = {Columns.OBS: flat}
                stateful = module.is_stateful()
                if stateful:
                    batch[Columns.STATE_IN] = self._state_in(module_id, module, b, n)
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
                    mask = flat.get("action_mask") if isinstance(flat, dict) else None
                    sampled, columns = self._draw(
                        dist_cls, out[Columns.ACTION_DIST_INPUTS], explore, mask
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
                if stateful:
                    self._state_out(module_id, out[Columns.STATE_OUT], agents, b, n, extra)
        extra[WEIGHTS_SEQ_NO] = np.full(actions.shape[:2], self._weights_seq_no)
        if Columns.STATE_OUT in extra:
            self._last_state_out = extra[Columns.STATE_OUT]
        return actions, extra

    # ---- recurrent modules: a state per copy and agent, reset when a copy's episode ends
    def _reset_states(self) -> None:
        self._states: dict[str, dict[str, np.ndarray]] = {}  # module -> key -> (B, n, ...)
        self._last_state_out: dict[str, np.ndarray] | None = None  # key -> (B, N, ...)

    def _state_in(self, module_id: str, module: Any, b: int, n: int) -> dict[str, torch.Tensor]:
        """The module's carried state as ``STATE_IN`` (b * n rows); initial where reset."""
        initial = {k: np.asarray(v, np.float32) for k, v in module.get_initial_state().items()}
        state = self._states.get(module_id)
        if state is None:
            state = {k: np.broadcast_to(v, (b, n, *v.shape)).copy() for k, v in initial.items()}
            self._states[module_id] = state
        elif (done := self._sampler.done_rows) is not None:
            for k, v in state.items():
                v[done] = initial[k]
        return {k: torch.from_numpy(v.reshape(b * n, *v.shape[2:])) for k, v in state.items()}

    def _state_out(
        self, module_id: str, state_out: Any, agents: Any, b: int, n: int, extra: dict
    ) -> None:
        """Keep the module's ``STATE_OUT`` for the next step and in the episodes."""
        state = {k: v.numpy().reshape(b, n, *v.shape[1:]) for k, v in state_out.items()}
        self._states[module_id] = state
        columns = extra.setdefault(Columns.STATE_OUT, {})
        for k, v in state.items():
            if k not in columns:
                columns[k] = np.empty((b, len(self._agents), *v.shape[2:]), v.dtype)
            columns[k][:, agents] = v

    def _draw(
        self,
        dist_cls: type,
        logits: torch.Tensor,
        explore: bool,
        mask: torch.Tensor | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions from a module's distribution inputs, and the columns episodes keep.

        With an action mask, categorical logits of masked actions are FLOAT_MIN (what the
        masking modules already give): no masked action is drawn.
        """
        if mask is not None and dist_cls is TorchCategorical:
            logits = logits.masked_fill(mask == 0, FLOAT_MIN)
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
        with gc_paused():  # thousands of episode objects, none of them cyclic garbage
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
                    chunk.episode = concat_chunks(parts.pop(chunk.copy, []), chunk.episode)
                    done.append(chunk)
                else:
                    parts[chunk.copy].append(chunk.episode)
        self._needs_initial_reset = True
        done = done[:num_episodes]
        self._finish(done)
        return [chunk.episode for chunk in done]

    def _restart(self) -> None:
        self._sampler.reset()
        self._episode_ids = [new_id() for _ in range(self.num_envs)]
        self._env_t[:] = 0
        self._tally.reset()
        self._reset_states()
        self._needs_initial_reset = False

    def _rollout(self, steps: int, explore: bool) -> list[EpisodeChunk]:
        start = time.perf_counter()
        before = self._last_state_out
        rollout = self._sampler.run(self._act, steps, explore, self._env_actions)
        if before is not None:  # recurrent: the state continuing episodes' chunks look back on
            rollout.extra_before = {Columns.STATE_OUT: before}
        records = self._tally.add(rollout, self._env_t, time.perf_counter() - start)
        with gc_paused():  # ~10 objects per agent and chunk, none of them cyclic garbage
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
        acted = None if rollout.alive is None else rollout.alive[:-1].sum(axis=(0, 1)).tolist()
        self._count(steps, len(finished), acted)
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
                dict(zip(self._agents, lengths.tolist()))
                if (lengths := record.agent_lengths) is not None
                else dict.fromkeys(self._agents, record.length),
            )
        self._finished.clear()
        return self.metrics.reduce()

    def _count(self, steps: int, episodes: int, acted: list[int] | None = None) -> None:
        """Log the step counts; `acted`: each agent's steps, when agents can leave."""
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
        for n, (agent, module) in enumerate(zip(self._agents, self._modules)):
            agent_steps = env_steps if acted is None else acted[n]
            m.log_value((NUM_AGENT_STEPS_SAMPLED, agent), agent_steps, reduce="sum")
            m.log_value(
                (NUM_AGENT_STEPS_SAMPLED_LIFETIME, agent), agent_steps, reduce="lifetime_sum"
            )
            m.log_value((NUM_MODULE_STEPS_SAMPLED, module), agent_steps, reduce="sum")
            m.log_value(
                (NUM_MODULE_STEPS_SAMPLED_LIFETIME, module), agent_steps, reduce="lifetime_sum"
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


def concat_chunks(parts: list[Any], last: Any) -> Any:
    """Chunks of one episode as one episode (``MultiAgentEpisode.concat_episode``)."""
    if not parts:
        return last
    first = parts[0]
    for part in [*parts[1:], last]:
        first.concat_episode(part)
    return first
