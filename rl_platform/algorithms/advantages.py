"""GAE for PPO's learner, vectorized over episodes, with advantage standardization optional.

RLlib's ``GeneralAdvantageEstimation`` connector runs the GAE recursion as one Python loop
over every timestep of the batch (about a second for 180,000 agent steps here) and always
standardizes advantages. :class:`EpisodeGAE` computes the same targets with the loop
over the longest episode's steps, every episode at once, and standardizes only when
asked (BenchMARL, following TorchRL's ``ClipPPOLoss``, does not). The learner swaps it in
for RLlib's piece: :func:`replace_gae`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.connectors.learner.general_advantage_estimation import (
    GeneralAdvantageEstimation,
)
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.numpy import convert_to_numpy
from ray.rllib.utils.postprocessing.zero_padding import (
    split_and_zero_pad_n_episodes,
    unpad_data_if_necessary,
)


def gae_value_targets(
    values: np.ndarray,
    rewards: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray,
    episode_lens: list[int],
    gamma: float,
    lambda_: float,
) -> np.ndarray:
    """RLlib's ``compute_value_targets``, one step at a time for all episodes together.

    Every episode's last step is terminated or truncated (RLlib's learner adds one
    artificial, truncated step to each), so no recursion crosses from one episode into
    the next and the episodes can be stacked as rows.
    """
    lens = np.asarray(episode_lens, dtype=np.int64)
    total = int(lens.sum())
    values = np.asarray(values, dtype=np.float32).reshape(total)
    if total == 0:
        return values.copy()
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    width = int(lens.max())
    steps = np.arange(width)
    valid = steps[None, :] < lens[:, None]
    index = np.where(valid, starts[:, None] + steps[None, :], 0)

    non_terminal = 1.0 - np.asarray(terminateds, dtype=np.float32).reshape(total)
    propagate = non_terminal * (1.0 - np.asarray(truncateds, dtype=np.float32).reshape(total))
    next_values = np.append(values[1:], np.float32(0.0))
    deltas = np.asarray(rewards, np.float32).reshape(total) + gamma * non_terminal * next_values
    deltas -= values

    delta = np.where(valid, deltas[index], 0.0).astype(np.float32)
    carry = np.where(valid, propagate[index], 0.0).astype(np.float32) * np.float32(gamma * lambda_)
    advantages = np.zeros_like(delta)
    running = np.zeros(len(lens), dtype=np.float32)
    for t in range(width - 1, -1, -1):
        running = delta[:, t] + carry[:, t] * running
        advantages[:, t] = running
    return (advantages[valid] + values).astype(np.float32)


class EpisodeGAE(GeneralAdvantageEstimation):
    """RLlib's GAE connector with :func:`gae_value_targets` and optional standardization."""

    def __init__(self, *args: Any, standardize: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.standardize = standardize

    def __call__(self, *, rl_module, episodes, batch, **kwargs):  # noqa: D102
        sa_episodes = list(
            self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False)
        )
        device = None
        for module_id, module in rl_module.items():
            if module_id not in batch or not isinstance(module, ValueFunctionAPI):
                continue
            preds = module.compute_values(batch[module_id])
            device = preds.device
            lens = [len(e) for e in sa_episodes if e.module_id in (None, module_id)]
            column = batch[module_id]
            preds = unpad_data_if_necessary(lens, convert_to_numpy(preds))
            targets = gae_value_targets(
                preds,
                *(
                    unpad_data_if_necessary(lens, convert_to_numpy(column[key]))
                    for key in (Columns.REWARDS, Columns.TERMINATEDS, Columns.TRUNCATEDS)
                ),
                episode_lens=lens,
                gamma=self.gamma,
                lambda_=self.lambda_,
            )
            advantages = targets - preds
            if self.standardize:
                advantages = (advantages - advantages.mean()) / max(1e-4, advantages.std())
            if module.is_stateful():
                seq = module.model_config["max_seq_len"]
                advantages = np.stack(split_and_zero_pad_n_episodes(advantages, lens, seq))
                targets = np.stack(split_and_zero_pad_n_episodes(targets, lens, seq))
            column[Postprocessing.ADVANTAGES] = advantages.astype(np.float32)
            column[Postprocessing.VALUE_TARGETS] = targets
        return self._to_tensors(rl_module, episodes, batch, device)

    def _to_tensors(self, rl_module: Any, episodes: Any, batch: dict, device: Any) -> dict:
        from ray.rllib.connectors.common.numpy_to_tensor import NumpyToTensor

        if self._numpy_to_tensor_connector is None:
            self._numpy_to_tensor_connector = NumpyToTensor(
                as_learner_connector=True, device=device
            )
        tensors = self._numpy_to_tensor_connector(
            rl_module=rl_module,
            batch={
                mid: {
                    key: column[key]
                    for key in (Postprocessing.ADVANTAGES, Postprocessing.VALUE_TARGETS)
                }
                for mid, column in batch.items()
                if Postprocessing.ADVANTAGES in column
            },
            episodes=episodes,
        )
        for mid, columns in tensors.items():
            batch[mid].update(columns)
        return batch


def replace_gae(learner: Any, standardize: bool) -> None:
    """Swap RLlib's GAE piece in `learner`'s connector for :class:`EpisodeGAE`."""
    pipeline = learner._learner_connector
    if pipeline is None:
        return
    if not any(type(c) is GeneralAdvantageEstimation for c in pipeline.connectors):
        return
    config = learner.config
    pipeline.insert_after(
        GeneralAdvantageEstimation,
        EpisodeGAE(gamma=config.gamma, lambda_=config.lambda_, standardize=standardize),
    )
    pipeline.remove(GeneralAdvantageEstimation)
