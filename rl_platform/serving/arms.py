"""What a server serves: checkpoints resolved into arms, and the replica's settings.

Everything here runs in the driver before anything starts (plain data travels to the
replicas): an arm is one checkpoint's weights-only export with its id and the run's
safety section; :class:`ServerConfig` holds what a replica needs.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_platform import registry
from rl_platform.checkpoints import PolicyExportError, pack_export, read_manifest
from rl_platform.evaluation.rollout import make_core
from rl_platform.evaluation.target import EvaluationError, resolve_target
from rl_platform.serving import guard

# Feedback rewards accepted when the env declares no `reward_range` (none of the
# platform's do: Gymnasium 1.x dropped Env.reward_range and PettingZoo never had one).
# Seven orders of magnitude above any platform env's per-step reward and above realistic
# per-decision business outcomes, yet it refuses the usual client bugs (a Unix time in s
# or ms, a sentinel such as 1e308 or DBL_MAX), and a million stored rewards keep their
# sums of squares (Welch's t-test, AWR's standardization) around 1e24, far from overflow.
DEFAULT_REWARD_BOUND = 1e9
STORE_PATH = Path("serving") / "feedback.sqlite"  # beside the champion's checkpoint dir


class ServingError(ValueError):
    """What was asked to be served cannot be: the message says what and why."""


# --------------------------------------------------------------------------- arms


@dataclass(frozen=True)
class ArmSpec:
    """One checkpoint to serve, resolved in the driver (plain data: it travels to replicas)."""

    checkpoint: str  # the checkpoint directory (holds policies/)
    run_dir: str | None
    id: str  # checkpoint name + short sha256 of the export
    manifest: dict[str, Any]
    safety: dict[str, Any] | None  # the run's safety section
    # the export's files: replicas load these, so a node that cannot see the checkpoint
    # (a cluster node, a URI fetched to the driver's temp dir) serves it too
    export: dict[str, bytes] = field(default_factory=dict, repr=False)


def resolve_arm(path: str | Path) -> ArmSpec:
    """The checkpoint behind a checkpoint or run directory (a run: its best checkpoint).

    Raises:
        ServingError: nothing there, no policy export, a corrupt or unloadable one, or an
            env without a batched core.
    """
    try:
        target = resolve_target(path)
        manifest = read_manifest(target.checkpoint)
        export = pack_export(target.checkpoint)  # the manifest, then each module's weights
        digest = hashlib.sha256()
        for data in export.values():  # the weights it loads, nothing else
            digest.update(data)
    except (EvaluationError, PolicyExportError, OSError) as err:
        raise ServingError(f"cannot serve {path}: {err}") from None
    return ArmSpec(
        checkpoint=str(target.checkpoint.resolve()),
        run_dir=str(target.run_dir.resolve()) if target.run_dir else None,
        id=f"{target.checkpoint.name}-{digest.hexdigest()[:12]}",
        manifest=manifest,
        safety=target.safety,
        export=export,
    )


@dataclass(frozen=True)
class ServerConfig:
    """Everything a replica needs, decided in the driver."""

    champion: ArmSpec
    challenger: ArmSpec | None = None
    split: float = 0.1
    shield: dict[str, Any] | None = None  # a SafetySpec as a dict; None: no shield
    store: str | None = None  # feedback store file; None: no store
    batching: bool = True
    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.002
    token_file: str | None = None  # requests need this file's bearer token; None: open
    reward_range: tuple[float, float] = (-DEFAULT_REWARD_BOUND, DEFAULT_REWARD_BOUND)
    body_timeout_s: float = guard.BODY_TIMEOUT_S  # a request body must arrive within it
    recurrent: bool = False  # a served module keeps a state per session (plan() sets it)


def core_of(arm: ArmSpec) -> Any:
    """A one-copy core of the arm's env, with the config it trained on."""
    env_id, config = arm.manifest["env"]["id"], dict(arm.manifest["env"]["config"])
    try:
        # the core's levels, as the evaluation reads them (a view may declare none)
        level = config.get("task", registry.get_env(env_id).load().core_cls.task_levels[0])
        return make_core(env_id, config, level, 1)
    except (KeyError, ValueError, AttributeError) as err:  # AttributeError: no core_cls
        raise ServingError(f"{arm.checkpoint}: {err}") from None


def checkpoint_info(arm: ArmSpec) -> dict[str, Any]:
    """The arm's id, path, algorithm, modules and versions, as /v1/info shows them."""
    return {
        "id": arm.id,
        "path": arm.checkpoint,
        "algorithm": arm.manifest["algorithm"],
        "modules": {m: spec["module_class"] for m, spec in arm.manifest["modules"].items()},
        "versions": dict(arm.manifest.get("versions", {})),
    }


def check_reward_range(reward_range: Any) -> tuple[float, float]:
    """``reward_range`` as two finite floats, low < high; else :class:`ServingError`."""
    try:
        low, high = (float(v) for v in reward_range)
    except (TypeError, ValueError):
        raise ServingError(
            f"reward_range must be two numbers (low, high), got {reward_range!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ServingError(
            f"reward_range must be two finite numbers with low < high, got ({low:g}, {high:g})"
        )
    return low, high


def env_reward_range(env_id: str) -> tuple[float, float]:
    """The feedback rewards accepted for ``env_id``: its declared ``reward_range``, clipped.

    An env class may declare ``reward_range = (low, high)`` (Gymnasium 0.x style); an
    unbounded or missing side is +-:data:`DEFAULT_REWARD_BOUND`. No platform env declares
    one, so theirs is +-1e9.
    """
    low, high = -DEFAULT_REWARD_BOUND, DEFAULT_REWARD_BOUND
    entry = registry.get_env(env_id)
    declared = getattr(entry.load(), "reward_range", None) if entry is not None else None
    try:
        lo, hi = (float(v) for v in declared)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return low, high
    low = lo if math.isfinite(lo) else low
    high = hi if math.isfinite(hi) else high
    return (low, high) if low < high else (-DEFAULT_REWARD_BOUND, DEFAULT_REWARD_BOUND)
