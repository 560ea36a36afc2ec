"""Batched sampling: an RLlib EnvRunner that steps B env copies and all agents at once.

RLlib's stock ``MultiAgentEnvRunner`` steps B single-copy envs, building dicts of dicts,
running the connector pipelines and appending to an episode object per copy each step,
which caps sampling at a few thousand env steps/s whatever the env's own speed.
:class:`BatchedEnvRunner` keeps RLlib's contract (``MultiAgentEpisode`` chunks, the same
metrics, weight syncs, checkpoints, restarts) but samples from the env's
:class:`~rl_platform.envs.base.BatchedCore` directly:

* each step is ONE ``core.step`` over B copies x N agents and ONE forward pass per
  RLModule (actions drawn in numpy for RLlib's Gaussian and categorical distributions,
  :func:`draw_actions`; a module that picks its actions itself, as IQL/VDN/QMIX's
  epsilon-greedy does, is taken at its word);
* copies whose episode ended are reset individually (``core.reset(rng, mask=done)``);
* the rollout stays in arrays ``(T, B, N, ...)`` written in place into blocks reused once
  their episodes are gone (:class:`BlockPool`), cut into episodes once per fragment
  (:func:`episodes_from_rollout`); episode metrics come from per-copy running sums
  (:class:`EpisodeTally`).

Rewards are :class:`~rl_platform.rewards.BatchedRewards` (the composition
:class:`~rl_platform.rewards.RewardEnv` runs at B=1) and observations
:class:`GlobalStateObservations` (what :class:`GlobalStateEnv` gives at B=1), so what
the modules see and learn from is what the stock runner would give them. Difference
rewards, the safety shield and recurrent modules are not supported yet:
:func:`unsupported_reason` names them and the experiment falls back to the stock runner.

Not done (differences from the stock runner): ``on_episode_created``,
``on_episode_start`` and ``on_episode_step`` callbacks are not called (``on_episode_end``
and ``on_sample_end`` are); per-step infos are empty (only an episode's last infos carry
its reward summary); the env-to-module and module-to-env connector pipelines are not run
(the runner does their default work: observations to tensors, actions sampled, Box
actions unsquashed or clipped as ``normalize_actions``/``clip_actions`` say), so custom
connectors need the stock runner; ``on_episode_end`` gets ``prev_episode_chunks=[]``.

Modules: ``env`` (observations, the B=1 and batched envs), ``episodes`` (rollouts to
episodes), ``tally`` (per-copy bookkeeping), ``sampler`` (the loop), ``distributions``
(numpy action draws), ``runner`` (the RLlib env runner).
"""

from rl_platform.sampling.distributions import draw_actions
from rl_platform.sampling.env import (
    BatchedMultiAgentEnv,
    GlobalStateEnv,
    GlobalStateObservations,
    unsupported_reason,
    with_one_hot,
)
from rl_platform.sampling.episodes import (
    EpisodeChunk,
    EpisodeRecord,
    Rollout,
    episodes_from_rollout,
)
from rl_platform.sampling.runner import BatchedEnvRunner
from rl_platform.sampling.sampler import BatchedSampler
from rl_platform.sampling.tally import BlockPool, EpisodeTally

__all__ = [
    "BatchedEnvRunner",
    "BatchedMultiAgentEnv",
    "BatchedSampler",
    "BlockPool",
    "EpisodeChunk",
    "EpisodeRecord",
    "EpisodeTally",
    "GlobalStateEnv",
    "GlobalStateObservations",
    "Rollout",
    "draw_actions",
    "episodes_from_rollout",
    "unsupported_reason",
    "with_one_hot",
]
