"""A Gaussian squashed by tanh into a Box, with a state-dependent scale (TorchRL's TanhNormal).

BenchMARL's MAPPO and IPPO act through this distribution on continuous actions: the
policy outputs a location and a scale per action dimension, the scale through a softplus
biased so that a zero input gives 1 (``biased_softplus_1.0``, floored at 1e-4), and a
sample ``u ~ N(loc, scale)`` becomes ``center + half_width * tanh(u)``, so every action
lies inside the Box and none is clipped. ``action_distribution: tanh_normal`` in MAPPO
and IPPO selects it (docs/algorithms.md).
"""

from __future__ import annotations

import math
import sys
from functools import cache

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchDeterministic,
    TorchDistribution,
)

SCALE_BIAS = math.log(math.e - 1.0)  # softplus(0 + bias) = 1
MIN_SCALE = 1e-4
_EPS = 1e-6  # keeps atanh finite for actions on the Box's faces
_LOG2 = math.log(2.0)


def _log_jacobian(u: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(u)^2), in the numerically stable form."""
    return 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))


class TorchTanhNormal(TorchDistribution):
    """tanh-squashed diagonal Gaussian in [-1, 1]; :func:`tanh_normal_for` binds a Box.

    Inputs (``from_logits``): locations, then pre-softplus scales. ``logp`` inverts the
    squash (exact inside the Box); ``kl`` is the Gaussians' (the squash is a bijection, so
    it is exact); ``entropy`` is the Gaussian's, an approximation of the squashed one
    (TorchRL reports none).
    """

    center: tuple[float, ...] | float = 0.0
    half_width: tuple[float, ...] | float = 1.0

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        self.loc = loc
        self.scale = scale
        super().__init__(loc=loc, scale=scale)

    def _get_torch_distribution(self, loc, scale) -> torch.distributions.Distribution:
        return torch.distributions.Normal(loc, scale, validate_args=False)

    @classmethod
    def from_logits(cls, logits: torch.Tensor, **kwargs) -> TorchTanhNormal:  # noqa: D102
        loc, raw = logits.chunk(2, dim=-1)
        return cls(loc, F.softplus(raw + SCALE_BIAS).clamp_min(MIN_SCALE))

    @staticmethod
    def required_input_dim(space: gym.Space, **kwargs) -> int:  # noqa: D102
        return 2 * int(np.prod(space.shape))

    def _bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        center = torch.as_tensor(self.center, dtype=like.dtype, device=like.device)
        half = torch.as_tensor(self.half_width, dtype=like.dtype, device=like.device)
        return center, half

    def squash(self, u: torch.Tensor) -> torch.Tensor:
        """Pre-squash values -> actions in the Box."""
        center, half = self._bounds(u)
        return center + half * torch.tanh(u)

    def _unsquash(self, action: torch.Tensor) -> torch.Tensor:
        center, half = self._bounds(action)
        return torch.atanh(((action - center) / half).clamp(-1.0 + _EPS, 1.0 - _EPS))

    def _logp_of(self, u: torch.Tensor) -> torch.Tensor:
        _, half = self._bounds(u)
        log_half = torch.log(half).expand_as(u)
        return (self._dist.log_prob(u) - _log_jacobian(u) - log_half).sum(-1)

    def logp(self, value: torch.Tensor, **kwargs) -> torch.Tensor:  # noqa: D102
        return self._logp_of(self._unsquash(value))

    def sample(self, *, sample_shape=None) -> torch.Tensor:  # noqa: D102
        return self.squash(self._dist.sample(sample_shape or torch.Size()))

    def rsample(self, *, sample_shape=None) -> torch.Tensor:  # noqa: D102
        return self.squash(self._dist.rsample(sample_shape or torch.Size()))

    def sample_and_logp(self, *, sample_shape=None):  # noqa: D102
        u = self._dist.sample(sample_shape or torch.Size())
        return self.squash(u), self._logp_of(u)

    def rsample_and_logp(self, *, sample_shape=None):  # noqa: D102
        u = self._dist.rsample(sample_shape or torch.Size())
        return self.squash(u), self._logp_of(u)

    def entropy(self) -> torch.Tensor:  # noqa: D102
        return self._dist.entropy().sum(-1)

    def kl(self, other: TorchTanhNormal) -> torch.Tensor:  # noqa: D102
        return torch.distributions.kl.kl_divergence(self._dist, other._dist).sum(-1)

    def to_deterministic(self) -> TorchDeterministic:
        """The squashed location (TorchRL's deterministic sample)."""
        return TorchDeterministic(loc=self.squash(self.loc))


@cache
def _bound_class(center: tuple[float, ...], half_width: tuple[float, ...]) -> type:
    name = f"TorchTanhNormal_{abs(hash((center, half_width))):x}"
    cls = type(name, (TorchTanhNormal,), {"center": center, "half_width": half_width})
    cls.__module__ = __name__
    setattr(sys.modules[__name__], name, cls)  # pickled by reference, like any class here
    return cls


def tanh_normal_for(space: gym.spaces.Box) -> type[TorchTanhNormal]:
    """The :class:`TorchTanhNormal` class whose samples fill `space` (finite bounds).

    Raises:
        ValueError: the Box has an infinite bound.
    """
    low = np.asarray(space.low, dtype=np.float64).reshape(-1)
    high = np.asarray(space.high, dtype=np.float64).reshape(-1)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"a tanh-normal policy needs a bounded action Box, got {space}")
    center = tuple(float(x) for x in (low + high) / 2)
    half = tuple(float(x) for x in (high - low) / 2)
    return _bound_class(center, half)
