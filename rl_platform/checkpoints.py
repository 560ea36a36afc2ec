"""Policy exports that outlive Ray upgrades, beside every RLlib checkpoint.

Each RLlib checkpoint (pickles) also gets ``policies/``: each module's ``<module_id>.pt``
torch ``state_dict`` and a ``manifest.json`` (schema: :mod:`rl_platform.policy_manifest`).
:func:`load_policy` rebuilds a module from that alone, unpickling nothing, so an export
is safe to load from a stranger; evaluation and serving load policies this way. The
export's contents and guarantees: docs/getting-started.md and docs/security.md.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import yaml

from rl_platform import registry
from rl_platform.algorithms.common import sync_env_runner_weights
from rl_platform.config import ExperimentConfig
from rl_platform.config.groups import modules_of
from rl_platform.policy_manifest import (
    CATALOG_CLASSES,
    FORMAT_VERSION,
    MODULE_CLASSES,
    PolicyExportError,
    parse_manifest,
    space_from_json,
    space_to_json,
    validate_manifest,
)
from rl_platform.registry import env_config_of
from rl_platform.runs import CONFIG_FILE
from rl_platform.trust import check_own_state
from rl_platform.version import __version__

log = logging.getLogger(__name__)

__all__ = [
    "EXPORT_DIR",
    "FORMAT_VERSION",
    "MANIFEST",
    "PolicyExportError",
    "export_dir_of",
    "export_for_run",
    "export_policies",
    "load_algorithm",
    "load_policy",
    "load_weights",
    "pack_export",
    "read_manifest",
    "runtime_versions",
    "unpack_export",
    "write_manifest",
]

EXPORT_DIR = "policies"
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 32 << 20


def runtime_versions() -> dict[str, str]:
    """The rl_platform, Ray and torch versions of this process (stored in manifests)."""
    import ray
    import torch

    return {"rl_platform": __version__, "ray": ray.__version__, "torch": torch.__version__}


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def export_policies(checkpoint_dir: str | Path, experiment: dict[str, Any]) -> Path:
    """Write ``policies/`` beside an RLlib algorithm checkpoint; returns its path.

    Args:
        checkpoint_dir: an algorithm checkpoint (holds ``learner_group/``).
        experiment: the run's resolved experiment (``config.yaml`` content).

    Raises:
        PolicyExportError: a module whose class, catalog or spaces an export cannot hold.
    """
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

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
            "observation_space": space_to_json(module.observation_space),
            "action_space": space_to_json(module.action_space),
            "model_config": dict(module.model_config or {}),
        }

    env_id = experiment["env"]["id"]
    entry = registry.get_env(env_id)
    env_cls = entry.load()
    agents = env_cls({**experiment["env"]["config"], **entry.bound_config}).possible_agents
    manifest = {
        "format_version": FORMAT_VERSION,
        "versions": runtime_versions(),
        "env": {"id": env_id, "config": _trained_env_config(experiment)},
        "algorithm": experiment["algorithm"]["id"],
        "agents": modules_of(experiment["algorithm"], agents),
        "modules": modules,
    }
    if experiment.get("hierarchy"):  # its modules choose strategies (advanced.hierarchical)
        manifest["hierarchy"] = experiment["hierarchy"]
    write_manifest(out, manifest)
    return out


def _trained_env_config(experiment: dict[str, Any]) -> dict[str, Any]:
    """The env section's config plus the run's reward weights and team share."""
    return env_config_of(ExperimentConfig.model_validate(experiment))


def write_manifest(export_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Validate a format-2 manifest and write it as ``export_dir/manifest.json``.

    Raises:
        PolicyExportError: the manifest does not fit the schema (so no reader would load it).
    """
    path = Path(export_dir) / MANIFEST
    try:  # as a reader will see it: tuples become lists, NaN and infinity are refused
        plain = json.loads(json.dumps(manifest, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise PolicyExportError(f"{path}: the manifest is not plain JSON data: {err}") from None
    data = validate_manifest(plain, str(path))
    scratch = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    scratch.replace(path)
    return path


def export_dir_of(path: str | Path) -> Path:
    """The ``policies/`` folder of an export path or of the checkpoint holding one."""
    path = Path(path)
    if (path / EXPORT_DIR / MANIFEST).is_file():
        return path / EXPORT_DIR
    return path


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` resolves (symlinks followed) to somewhere inside ``folder``."""
    return path.resolve().is_relative_to(folder.resolve())


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    """The validated manifest of a ``policies/`` export (or of the checkpoint holding one).

    Format-1 manifests (older exports) come back upgraded to format 2. The result is
    plain JSON data that fits :class:`~rl_platform.policy_manifest.PolicyManifest`.

    Raises:
        PolicyExportError: no export there, a manifest that links outside its folder, is
            too large, not UTF-8 JSON, or does not fit the schema (one sentence saying
            which field and what was expected).
    """
    export_dir = export_dir_of(export_dir)
    path = export_dir / MANIFEST
    if not path.is_file():
        raise PolicyExportError(f"{export_dir}: no policy export ({MANIFEST} missing).")
    if not _inside(path, export_dir):
        raise PolicyExportError(f"{path}: links outside its export folder; refusing to read it.")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise PolicyExportError(
                f"{path}: corrupt manifest: over {MAX_MANIFEST_BYTES >> 20} MiB."
            )
        text = path.read_bytes()
    except OSError as err:
        raise PolicyExportError(f"{path}: cannot read the manifest: {err}.") from None
    return parse_manifest(text, str(path))


def pack_export(export_dir: str | Path) -> dict[str, bytes]:
    """A ``policies/`` export's files (its manifest and each module's weights) as bytes.

    What a node that cannot see the checkpoint needs to load it: the bytes travel as
    data (Ray's object store) and :func:`unpack_export` writes them back, where
    :func:`load_policy` checks them as it checks any export.

    Raises:
        PolicyExportError: no export there, a corrupt manifest, a missing module's weights
            or a file that links outside the export folder.
    """
    export_dir = export_dir_of(export_dir)
    manifest = read_manifest(export_dir)
    files = {}
    for name in [MANIFEST, *(f"{m}.pt" for m in sorted(manifest["modules"]))]:
        path = export_dir / name
        if not path.is_file() or not _inside(path, export_dir):
            raise PolicyExportError(f"{export_dir}: {name} is missing or links outside it.")
        files[name] = path.read_bytes()
    return files


def unpack_export(files: dict[str, bytes], into: str | Path) -> Path:
    """Write :func:`pack_export`'s files to ``into/policies/``; returns ``into``.

    Raises:
        PolicyExportError: a file name that is not a plain name in one folder.
    """
    out = Path(into) / EXPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if not name or name.startswith(".") or "/" in name or os.sep in name:
            raise PolicyExportError(f"refusing the export file name {name!r:.80}")
        (out / name).write_bytes(data)
    return Path(into)


def load_weights(export_dir: str | Path, module_id: str) -> dict[str, Any]:
    """One module's state dict (name -> tensor) from its ``<module_id>.pt``, weights only.

    Raises:
        PolicyExportError: the file is missing, links outside the export folder, is
            truncated or corrupt, or holds anything but a weights-only state dict (a
            pickled object, say: ``torch.load(weights_only=True)`` refuses those).
    """
    import torch

    export_dir = export_dir_of(export_dir)
    path = export_dir / f"{module_id}.pt"
    what = f"{export_dir}: cannot load module {module_id!r}"
    if os.sep in module_id or module_id.startswith(".") or not path.is_file():
        raise PolicyExportError(f"{what}: its weights {path.name} are missing.")
    if not _inside(path, export_dir):
        raise PolicyExportError(f"{what}: {path.name} links outside its export folder.")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 (torch raises many kinds for a bad file)
        raise PolicyExportError(
            f"{what}: {path.name} is not a readable weights-only state dict: it is truncated, "
            f"corrupt, or holds pickled objects, which exports never load "
            f"({type(err).__name__}: {_torch_reason(err)})."
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise PolicyExportError(f"{what}: {path.name} does not hold a state dict of tensors.")
    return state


def _torch_reason(err: Exception) -> str:
    """What the weights-only unpickler refused (not torch's advice to unpickle)."""
    text = " ".join(str(err).split())
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
        for end in (". Please", " Please use", " Check the documentation"):
            text = text.split(end, 1)[0]
    elif text.startswith("Weights only load failed"):
        text = "refused by the weights-only unpickler"
    return text.strip()[:160] or type(err).__name__


def _import_allowed(path: str, allowed: tuple[str, ...], base: type) -> type:
    """An allow-listed class by its dotted name, checked to subclass ``base``."""
    import importlib

    if path not in allowed:  # the manifest's schema refuses these already
        raise PolicyExportError(f"refusing to import {path!r}: not an allow-listed class")
    module_name, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PolicyExportError(f"{path!r} is not a {base.__name__}")
    return cls


def load_policy(export_dir: str | Path, module_id: str):
    """Rebuild one trained RLModule from an export, without unpickling anything.

    Raises:
        PolicyExportError: the export is missing or corrupt, names a class off the
            allow-list, or cannot be loaded by this Ray/torch (the message gives both
            versions).
    """
    from ray.rllib.core.models.catalog import Catalog
    from ray.rllib.core.rl_module.rl_module import RLModule

    export_dir = export_dir_of(export_dir)
    manifest = read_manifest(export_dir)
    spec = manifest["modules"].get(module_id)
    if spec is None:
        raise PolicyExportError(
            f"{export_dir}: no module {module_id!r}; it has {', '.join(manifest['modules'])}."
        )
    where = f"{export_dir}: module {module_id!r}"
    try:
        observation_space = space_from_json(spec["observation_space"])
        action_space = space_from_json(spec["action_space"])
    except PolicyExportError as err:
        raise PolicyExportError(f"{where}: {err}.") from None
    state = load_weights(export_dir, module_id)
    saved = manifest["versions"]
    here = runtime_versions()
    try:
        module_cls = _import_allowed(spec["module_class"], MODULE_CLASSES, RLModule)
        catalog_cls = (
            _import_allowed(spec["catalog_class"], CATALOG_CLASSES, Catalog)
            if spec["catalog_class"]
            else None
        )
        module = module_cls(
            observation_space=observation_space,
            action_space=action_space,
            inference_only=False,
            model_config=spec["model_config"],
            catalog_class=catalog_cls,
        )
        module.load_state_dict(state)
    except Exception as err:  # noqa: BLE001 (any failure here is an incompatibility)
        reason = (str(err).strip().splitlines() or [""])[0][:300]
        raise PolicyExportError(
            f"{export_dir}: cannot load module {module_id!r} "
            f"(exported with ray {saved.get('ray')}, torch {saved.get('torch')}; "
            f"this is ray {here['ray']}, torch {here['torch']}): {type(err).__name__}: {reason}"
        ) from None
    if saved.get("ray") != here["ray"]:
        log.warning(
            "policy exported with ray %s loaded under ray %s", saved.get("ray"), here["ray"]
        )
    module.eval()
    return module


def export_for_run(checkpoint_dir: str | Path, run_dir: str | Path) -> Path:
    """Export a checkpoint's policies using the run's ``config.yaml``."""
    experiment = yaml.safe_load((Path(run_dir) / CONFIG_FILE).read_text())
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

    algorithm = Algorithm.from_checkpoint(str(Path(checkpoint_dir).resolve()))
    sync_env_runner_weights(algorithm)
    for callback in force_list(algorithm.callbacks):
        callback.on_checkpoint_loaded(algorithm=algorithm)
    return algorithm
