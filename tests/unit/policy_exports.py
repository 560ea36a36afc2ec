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
    entry = registry.get_env(resolved.env.id)
    env = entry.load()({**resolved.env.config, **entry.bound_config})
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


def run_directory(root: Path, experiment: dict[str, Any]) -> Path:
    """A run directory as rlp train lays it out, with one checkpoint of a fresh export.

    Holds config.yaml, metrics.csv, summary.json (best_checkpoint: the checkpoint, as an
    absolute path) and trial/checkpoint_000000/policies/.
    """
    import json

    resolved = load_experiment(experiment)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(resolved.to_yaml())
    (root / "metrics.csv").write_text(
        "iteration,env_steps,episode_return_mean,level,reward_env\n1,1000,-30,,-10\n"
    )
    checkpoint = root / "trial" / "checkpoint_000000"
    fresh_ppo_export(checkpoint, experiment)
    summary = {"run_dir": str(root), "status": "finished", "best_checkpoint": str(checkpoint)}
    (root / "summary.json").write_text(json.dumps(summary))
    return root


def as_format_1(export: Path) -> None:
    """Rewrite an export's manifest in format 1, as rl_platform 0.1 wrote it.

    Format 1 held RLlib's space encoding (``gym_space_to_dict``: Box bounds as base64
    zlib-compressed ``.npy``); the spaces are re-encoded from the loaded module's.
    """
    import json

    from ray.rllib.utils.serialization import gym_space_to_dict

    from rl_platform.checkpoints import load_policy

    manifest = json.loads((export / "manifest.json").read_text())
    manifest["format_version"] = 1
    for key in ("hierarchy", "finetuned_from"):
        if manifest.get(key) is None:
            manifest.pop(key, None)
    for module_id, spec in manifest["modules"].items():
        module = load_policy(export, module_id)
        spec["observation_space"] = gym_space_to_dict(module.observation_space)
        spec["action_space"] = gym_space_to_dict(module.action_space)
    (export / "manifest.json").write_text(json.dumps(manifest, indent=2))


class _OpensForWriting:
    """Unpickles into ``open(path, "w")``: creates the file (a stand-in for any command)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def pickled_npy_payload(creates: Path) -> str:
    """A format-1 bound (base64 zlib ``.npy``) holding a pickle that creates ``creates``."""
    import base64
    import io
    import zlib

    import numpy as np

    array = np.array([_OpensForWriting(creates)], dtype=object)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return base64.b64encode(zlib.compress(buffer.getvalue())).decode("ascii")
