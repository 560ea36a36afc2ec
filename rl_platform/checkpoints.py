"""Policy exports that outlive Ray upgrades, beside every RLlib checkpoint.

RLlib checkpoints are pickles of classes and their constructor arguments: a Ray upgrade
that moves a class turns them into ``ModuleNotFoundError``, and loading one runs
whatever code the pickle names. So each checkpoint also gets ``policies/``:

* ``<module_id>.pt``: the module's torch ``state_dict``, loaded with ``weights_only=True``;
* ``manifest.json``: per module its class and catalog (import paths), observation and
  action spaces (RLlib's JSON space encoding), model config; the agent -> module mapping;
  the env id and the config it trained on (reward weights included); the rl_platform,
  Ray and torch versions.

:func:`load_policy` rebuilds a module from that alone (no pickle), checking the class is
an RLlib or rl_platform class and saying clearly when versions differ and loading fails.
Evaluation and serving load policies this way.
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from rl_platform.trust import check_own_state

log = logging.getLogger(__name__)

EXPORT_DIR = "policies"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
# Only classes from these packages are imported when rebuilding a module.
TRUSTED_PREFIXES = ("ray.rllib.", "rl_platform.")


class PolicyExportError(RuntimeError):
    """A policy export that is missing, corrupt, untrusted or incompatible."""


def runtime_versions() -> dict[str, str]:
    """The rl_platform, Ray and torch versions of this process (stored in manifests)."""
    import ray
    import torch

    from rl_platform import __version__

    return {"rl_platform": __version__, "ray": ray.__version__, "torch": torch.__version__}


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def export_policies(checkpoint_dir: str | Path, experiment: dict[str, Any]) -> Path:
    """Write ``policies/`` beside an RLlib algorithm checkpoint; returns its path.

    Args:
        checkpoint_dir: an algorithm checkpoint (holds ``learner_group/``).
        experiment: the run's resolved experiment (``config.yaml`` content).
    """
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule
    from ray.rllib.utils.serialization import gym_space_to_dict

    from rl_platform import registry
    from rl_platform.algorithms.common import SHARED_MODULE_ID

    checkpoint_dir = Path(checkpoint_dir)
    modules_dir = checkpoint_dir / "learner_group" / "learner" / "rl_module"
    out = checkpoint_dir / EXPORT_DIR
    out.mkdir(exist_ok=True)
    modules: dict[str, Any] = {}
    paths = sorted(p for p in modules_dir.iterdir() if p.is_dir())
    if experiment.get("curiosity"):  # the ICMs (learner-only) are not policies
        from rl_platform.advanced.curiosity import is_curiosity_module_id

        paths = [p for p in paths if not is_curiosity_module_id(p.name)]
    for path in paths:
        module = RLModule.from_checkpoint(str(path))
        catalog = getattr(module, "catalog", None)
        torch.save(module.state_dict(), out / f"{path.name}.pt")
        modules[path.name] = {
            "module_class": _class_path(type(module)),
            "catalog_class": _class_path(type(catalog)) if catalog is not None else None,
            "observation_space": gym_space_to_dict(module.observation_space),
            "action_space": gym_space_to_dict(module.action_space),
            "model_config": dict(module.model_config or {}),
        }

    env_id = experiment["env"]["id"]
    entry = registry.get_env(env_id)
    env_cls = entry.load()
    agents = env_cls({**experiment["env"]["config"], **entry.bound_config}).possible_agents
    shared = experiment["algorithm"]["shared_policy"]
    manifest = {
        "format_version": FORMAT_VERSION,
        "versions": runtime_versions(),
        "env": {"id": env_id, "config": _trained_env_config(experiment)},
        "algorithm": experiment["algorithm"]["id"],
        "agents": {a: (SHARED_MODULE_ID if shared else a) for a in agents},
        "modules": modules,
    }
    if experiment.get("hierarchy"):  # its modules choose strategies (advanced.hierarchical)
        manifest["hierarchy"] = experiment["hierarchy"]
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _trained_env_config(experiment: dict[str, Any]) -> dict[str, Any]:
    """The env section's config plus the run's reward weights and team share."""
    from rl_platform.algorithms.common import env_config_of
    from rl_platform.config import ExperimentConfig

    return env_config_of(ExperimentConfig.model_validate(experiment))


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    """The manifest of a ``policies/`` export (or of the checkpoint that holds one)."""
    export_dir = Path(export_dir)
    if (export_dir / EXPORT_DIR / MANIFEST).is_file():
        export_dir = export_dir / EXPORT_DIR
    path = export_dir / MANIFEST
    if not path.is_file():
        raise PolicyExportError(f"{export_dir}: no policy export ({MANIFEST} missing).")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PolicyExportError(f"{path}: corrupt manifest: {err}.") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PolicyExportError(
            f"{path}: export format {manifest.get('format_version')!r}, "
            f"this rl_platform reads format {FORMAT_VERSION}."
        )
    return manifest


def _import_trusted(path: str) -> type:
    if not path.startswith(TRUSTED_PREFIXES):
        raise PolicyExportError(f"refusing to import {path!r}: not an RLlib or rl_platform class")
    module_name, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def load_policy(export_dir: str | Path, module_id: str):
    """Rebuild one trained RLModule from an export, without unpickling anything.

    Raises:
        PolicyExportError: the export is missing or corrupt, names an untrusted class, or
            cannot be loaded by this Ray/torch (the message gives both versions).
    """
    import torch
    from ray.rllib.utils.serialization import gym_space_from_dict

    export_dir = Path(export_dir)
    if (export_dir / EXPORT_DIR / MANIFEST).is_file():
        export_dir = export_dir / EXPORT_DIR
    manifest = read_manifest(export_dir)
    spec = manifest["modules"].get(module_id)
    if spec is None:
        raise PolicyExportError(
            f"{export_dir}: no module {module_id!r}; it has {', '.join(manifest['modules'])}."
        )
    saved, here = manifest["versions"], runtime_versions()
    try:
        module_cls = _import_trusted(spec["module_class"])
        catalog_cls = _import_trusted(spec["catalog_class"]) if spec["catalog_class"] else None
        module = module_cls(
            observation_space=gym_space_from_dict(spec["observation_space"]),
            action_space=gym_space_from_dict(spec["action_space"]),
            inference_only=False,
            model_config=spec["model_config"],
            catalog_class=catalog_cls,
        )
        state = torch.load(export_dir / f"{module_id}.pt", weights_only=True, map_location="cpu")
        module.load_state_dict(state)
    except PolicyExportError:
        raise
    except Exception as err:  # noqa: BLE001 (any failure here is an incompatibility)
        raise PolicyExportError(
            f"{export_dir}: cannot load module {module_id!r} "
            f"(exported with ray {saved.get('ray')}, torch {saved.get('torch')}; "
            f"this is ray {here['ray']}, torch {here['torch']}): {type(err).__name__}: {err}"
        ) from None
    if saved.get("ray") != here["ray"]:
        log.warning(
            "policy exported with ray %s loaded under ray %s", saved.get("ray"), here["ray"]
        )
    module.eval()
    return module


def export_for_run(checkpoint_dir: str | Path, run_dir: str | Path) -> Path:
    """Export a checkpoint's policies using the run's ``config.yaml``."""
    experiment = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    return export_policies(checkpoint_dir, experiment)


def load_algorithm(checkpoint_dir: str | Path, *, trust: bool = False):
    """A whole RLlib algorithm from its checkpoint, every env runner on its weights.

    For continuing training or sampling with the checkpoint's exact algorithm. It unpickles
    the checkpoint, which can run code of whoever wrote it, so it refuses a directory this
    user alone cannot write (:class:`~rl_platform.trust.UntrustedStateError`) unless
    `trust`; policies alone load from anyone's export with :func:`load_policy`.
    ``Algorithm.from_checkpoint`` pushes weights to remote env runners
    fire-and-forget, which RLlib 2.60 can drop; :func:`sync_env_runner_weights` makes it
    synchronous. Unlike Tune's restore, ``from_checkpoint`` does not call the callbacks'
    ``on_checkpoint_loaded``; it is called here, so a curriculum continues at its level.
    """
    check_own_state(checkpoint_dir, trust=trust)
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.utils import force_list

    from rl_platform.algorithms.common import sync_env_runner_weights

    algorithm = Algorithm.from_checkpoint(str(Path(checkpoint_dir).resolve()))
    sync_env_runner_weights(algorithm)
    for callback in force_list(algorithm.callbacks):
        callback.on_checkpoint_loaded(algorithm=algorithm)
    return algorithm
