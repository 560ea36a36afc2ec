"""Data-parallel learners (``resources.num_learners >= 2``): what RLlib's DDP wrapping misses.

With two or more learners RLlib wraps each module in ``TorchDDPRLModule`` (torch DDP,
gloo on CPU). That wrapper does not implement ``ValueFunctionAPI``, so RLlib 2.60's GAE
connector (and ours) finds no value function and PPO's loss fails on the missing value
targets. :class:`DataParallelLearnerMixin` wraps value-function modules in
:class:`ValueFunctionDDPModule` instead. :func:`all_reduce_sum` lets running statistics
kept in buffers (value normalization, curiosity's reward scale) see every learner's
shard, as one learner sees the whole batch. The one place that touches RLlib's DDP
internals (``TorchLearner._make_modules_ddp_if_necessary``, ``TorchDDPRLModule``);
tests/unit/test_data_parallel.py fails when Ray changes them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from ray.rllib.core import ALL_MODULES
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchDDPRLModule

# Learner metric (under ALL_MODULES): learners that trained on an iteration's batch.
NUM_LEARNERS_UPDATED = "num_learners_updated"


class ValueFunctionDDPModule(TorchDDPRLModule, ValueFunctionAPI):
    """RLlib's DDP module wrapper that also offers the wrapped module's value function."""

    def compute_values(self, batch: dict[str, Any], embeddings: Any | None = None) -> Any:
        """The wrapped module's ``compute_values`` (outside DDP's forward: no gradient sync)."""
        return self.unwrapped().compute_values(batch, embeddings=embeddings)


def ddp_module(module: TorchRLModule, **ddp_kwargs: Any) -> TorchDDPRLModule:
    """`module` wrapped for DDP, keeping its value function where it has one."""
    cls = ValueFunctionDDPModule if isinstance(module, ValueFunctionAPI) else TorchDDPRLModule
    return cls(module, **ddp_kwargs)


class DataParallelLearnerMixin:
    """Wrap the modules of a torch learner with :func:`ddp_module` when learners are 2+.

    Put it before the learner class (``class L(DataParallelLearnerMixin, PPOTorchLearner)``).
    With 0 or 1 learner nothing is wrapped, as in RLlib. Every learner also counts its
    update in ``result["learners"]["__all_modules__"]["num_learners_updated"]`` (summed
    over learners: how many trained on the iteration's batch).
    """

    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:  # noqa: D102
        super().after_gradient_based_update(timesteps=timesteps)
        self.metrics.log_value((ALL_MODULES, NUM_LEARNERS_UPDATED), 1, reduce="sum")

    def _make_modules_ddp_if_necessary(self) -> None:
        if self.config.num_learners <= 1:
            return
        for module_id in list(self._module.keys()):
            module = self._module[module_id]
            if isinstance(module, TorchRLModule):
                wrapped = ddp_module(module, **self.config.torch_ddp_kwargs)
                self._module.add_module(module_id, wrapped, override=True)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the data-parallel learners (itself when there is one)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
