"""A checkpoint laid out as RLlib writes it, holding one fresh PPO module, and its export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rl_platform.checkpoints import export_policies
from rl_platform.config import load_experiment


def fresh_ppo_export(root: Path, experiment: dict[str, Any], hidden=(16, 16)):
    """Save an untrained shared PPO module for `experiment`'s env under `root`; export it.

    Returns:
        (root, the module).
    """
    from ray.rllib.algorithms.ppo.ppo_catalog import PPOCatalog
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
        DefaultPPOTorchRLModule,
    )
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rl_platform import registry

    resolved = load_experiment(experiment)
    env = registry.get_env(resolved.env.id).load()(dict(resolved.env.config))
    module = RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        observation_space=env.observation_spaces["agent_0"],
        action_space=env.action_spaces["agent_0"],
        model_config={"fcnet_hiddens": list(hidden), "vf_share_layers": False},
        catalog_class=PPOCatalog,
    ).build()
    module.save_to_path(str(root / "learner_group" / "learner" / "rl_module" / "shared"))
    export_policies(root, resolved.model_dump(mode="json"))
    return root, module
