"""Actions drawn in numpy from RLlib's Gaussian and categorical distributions."""

from __future__ import annotations

import math

import numpy as np
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchCategorical,
    TorchDiagGaussian,
)

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
