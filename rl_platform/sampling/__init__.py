"""Batched sampling: an RLlib EnvRunner that steps B env copies and all agents at once.

:class:`BatchedEnvRunner` keeps RLlib's env-runner contract but samples from the env's
:class:`~rl_platform.envs.base.BatchedCore` directly: one ``core.step`` over B copies x N
agents and one forward pass per RLModule a step (:func:`draw_actions`), rollouts kept in
reused blocks (:class:`BlockPool`) and cut into episodes once per fragment
(:func:`episodes_from_rollout`, :class:`EpisodeTally`); :func:`unsupported_reason` says
when a run falls back to the stock runner. Why and what differs: docs/algorithms.md.
Modules: ``env``, ``episodes``, ``tally``, ``sampler``, ``distributions``, ``runner``.
"""

from rl_platform.sampling.distributions import draw_actions
from rl_platform.sampling.env import (
    BatchedMultiAgentEnv,
    GlobalStateEnv,
    GlobalStateObservations,
    mask_size,
    mask_space,
    split_masked,
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
    "mask_size",
    "mask_space",
    "split_masked",
    "unsupported_reason",
    "with_one_hot",
]
