"""What to evaluate: a checkpoint or run directory resolved to its export, run and env.

Only checkpoints inside a given run directory are read; the policy export is loaded and
played on one observation of its env here, so every error shows before any episode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rl_platform import registry
from rl_platform.checkpoints import EXPORT_DIR, MANIFEST, PolicyExportError, read_manifest
from rl_platform.evaluation.policy import TrainedPolicy
from rl_platform.evaluation.rollout import make_core
from rl_platform.monitoring.io import complete_lines
from rl_platform.runs import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, TRIAL_DIR


class EvaluationError(ValueError):
    """What to evaluate is missing, corrupt or unsupported; the message says which."""


@dataclass(frozen=True)
class KeptCheckpoint:
    """A checkpoint the run kept (with its export), and when training saved it."""

    name: str
    path: Path
    iteration: int
    env_steps: int


@dataclass(frozen=True)
class Target:
    """A resolved checkpoint: its policy export, its run (if any) and its env."""

    checkpoint: Path
    run_dir: Path | None
    env_id: str
    env_config: dict[str, Any]
    algorithm: str
    level: str  # the main level: where the run ended
    trained_levels: tuple[str, ...]
    levels: tuple[str, ...]
    baselines: tuple[str, ...]
    curve: list[dict[str, Any]]  # metrics.csv rows (empty without a run)
    safety: dict[str, Any] | None = None  # the run's safety section (config.yaml)
    trace_fields: tuple[str, ...] = ()  # what the env's core records per step
    kept: tuple[KeptCheckpoint, ...] = ()  # the run's checkpoints, oldest first
    kept_note: str | None = None  # why there is no greedy learning curve (< 2 kept)


def locate(path: str | Path) -> tuple[Path, Path | None]:
    """(the checkpoint, its run directory or None) of a checkpoint or run directory.

    Raises:
        EvaluationError: nothing there, or a run without a checkpoint inside it.
    """
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"{path}: no such checkpoint or run directory")
    run_dir = path if (path / CONFIG_FILE).is_file() else None
    if run_dir is not None:
        return _run_checkpoint(run_dir), run_dir
    return path, next((p for p in path.parents[:3] if (p / CONFIG_FILE).is_file()), None)


def resolve_target(path: str | Path) -> Target:
    """Find the checkpoint, run, env and levels behind a checkpoint or run directory.

    A run directory means its best checkpoint (``summary.json``), else its newest; only
    checkpoints inside the run directory are read (a ``best_checkpoint`` that resolves
    elsewhere, through ``..`` or a symlink, is refused, not followed). The policy export
    is loaded once and played on one observation of its env, so every error shows here.

    Raises:
        EvaluationError: nothing there, no checkpoint, no policy export, a corrupt one, a
            corrupt ``summary.json``, a checkpoint outside the run directory, an env that
            is not registered or has no batched core, or a policy that does not fit its
            env.
    """
    checkpoint, run_dir = locate(path)
    try:
        manifest = read_manifest(checkpoint)
    except PolicyExportError as err:
        raise EvaluationError(f"{err} Is {path} a checkpoint written by rlp train?") from None
    if manifest.get("hierarchy"):
        raise EvaluationError(
            f"{checkpoint}: a hierarchical run (hierarchy:): its modules choose strategies "
            "every K steps (or act on the one-hot of a choice) rather than act on the env's "
            "observations, which the evaluation suite and serving do not play yet; "
            "bench/hierarchical.py scores a meta-controller against fixed strategies"
        )
    env_id = manifest["env"]["id"]
    entry = registry.get_env(env_id)
    if entry is None:
        raise EvaluationError(
            f"{checkpoint}: its policies were trained on env {env_id!r}, which is not "
            "registered here (rlp envs list shows the registered envs)"
        )
    try:
        env_cls = entry.load()
    except (ImportError, AttributeError, ValueError) as err:
        raise EvaluationError(f"{checkpoint}: env {env_id!r} cannot be loaded: {err}") from None
    if not hasattr(env_cls, "core_cls"):
        raise EvaluationError(
            f"{checkpoint}: env {env_id!r} has no batched core (BatchedCore), which the "
            "evaluation suite plays its episodes on; the platform's envs, VMAS envs and the "
            "PettingZoo envs the batched runner takes have one"
        )
    env_config = dict(manifest["env"]["config"])
    reason = getattr(env_cls, "batched_reason", None)
    why = reason({**env_config, **entry.bound_config}) if reason is not None else None
    if why is not None:
        raise EvaluationError(
            f"{checkpoint}: env {env_id!r} cannot be evaluated: the evaluation suite plays "
            f"its episodes on the env's batched core, which cannot run this config ({why})"
        )
    try:
        policy = TrainedPolicy(checkpoint)  # fail here, clearly, rather than in every worker
    except PolicyExportError as err:
        raise EvaluationError(str(err)) from None
    curve: list[dict[str, Any]] = []
    safety = None
    kept: tuple[KeptCheckpoint, ...] = ()
    kept_note = "a bare checkpoint: no run directory, so no kept checkpoints to score"
    if run_dir is not None:
        curve = _read_curve(run_dir / METRICS_FILE)
        safety = _run_safety(run_dir)
        kept, kept_note = kept_checkpoints(run_dir, curve)
    core_cls = env_cls.core_cls  # its levels and baselines (a view may declare none)
    levels = tuple(core_cls.task_levels)
    start = env_config.get("task", levels[0])
    if start not in levels:
        raise EvaluationError(
            f"{checkpoint}: the export's env config has task {start!r}; env {env_id!r} "
            f"has levels {', '.join(levels)}"
        )
    known = [r["level"] for r in curve if r.get("level") in levels]
    trained = tuple(dict.fromkeys(known)) or (start,)
    last = curve[-1].get("level") if curve else None
    level = last if last in levels else start
    _check_plays(checkpoint, policy, env_id, env_config, level)
    return Target(
        checkpoint=checkpoint,
        run_dir=run_dir,
        env_id=env_id,
        env_config=env_config,
        algorithm=manifest.get("algorithm", "?"),
        level=level,
        trained_levels=trained,
        levels=levels,
        baselines=tuple(core_cls.baselines),
        curve=curve,
        safety=safety,
        trace_fields=tuple(core_cls.trace_fields),
        kept=kept,
        kept_note=kept_note,
    )


def kept_checkpoints(
    run_dir: Path, curve: list[dict[str, Any]]
) -> tuple[tuple[KeptCheckpoint, ...], str | None]:
    """The run's kept checkpoints with a policy export, oldest first, and why < 2 if so.

    A checkpoint's iteration follows Tune's numbering: with ``checkpoint.every`` = E,
    ``checkpoint_<k>`` was saved at iteration (k + 1) E, and one more at the last
    iteration when that is no multiple of E (E = 0: only that one); its env steps are
    metrics.csv's at that iteration. A checkpoint whose iteration is not in metrics.csv,
    whose manifest is corrupt or which resolves outside the run is left out.
    """
    steps = {}
    for row in curve:
        try:
            steps[int(float(row["iteration"]))] = int(float(row["env_steps"]))
        except (KeyError, TypeError, ValueError):
            continue
    every = _checkpoint_every(run_dir)
    last = max(steps, default=0)
    at_end = last // every if every else 0  # the index of the checkpoint saved at the stop
    kept = []
    for path in sorted((run_dir / TRIAL_DIR).glob("checkpoint_*")):
        index = path.name.removeprefix("checkpoint_")
        if not index.isdigit() or not (path / EXPORT_DIR / MANIFEST).is_file():
            continue
        k = int(index)
        iteration = (k + 1) * every if every and (k + 1) * every <= last else None
        if iteration is None and k == at_end:
            iteration = last
        if iteration not in steps:
            continue
        try:  # one that resolves outside the run, or whose manifest is corrupt, is left out
            _inside_run(run_dir, path, "a kept checkpoint")
            read_manifest(path)
        except (EvaluationError, PolicyExportError):
            continue
        kept.append(KeptCheckpoint(path.name, path, iteration, steps[iteration]))
    if len(kept) >= 2:
        return tuple(kept), None
    names = ", ".join(c.name for c in kept) or "none with a policy export"
    note = (
        f"the run kept {len(kept)} checkpoint{'' if len(kept) == 1 else 's'} ({names}): a "
        "greedy learning curve needs two or more (train with checkpoint.every > 0 and "
        "checkpoint.keep >= 2 or null)"
    )
    return tuple(kept), note


def _checkpoint_every(run_dir: Path) -> int:
    """``checkpoint.every`` of the run's config.yaml (0 when unreadable)."""
    try:
        config = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
        return max(0, int(config["checkpoint"]["every"] or 0))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return 0


def _check_plays(
    checkpoint: Path, policy: Any, env_id: str, env_config: dict[str, Any], level: str
) -> None:
    """Raise EvaluationError unless the policy acts on one observation of its env's core."""
    try:
        core = make_core(env_id, env_config, level, 1)
    except (ValueError, TypeError, KeyError) as err:
        raise EvaluationError(
            f"{checkpoint}: the export's env config does not fit env {env_id!r}: {err}"
        ) from None
    obs = np.zeros((1, core.num_agents, *core.observation_space.shape), np.float32)
    try:
        actions = np.asarray(policy.actions(obs))
        policy.reset()
    except Exception as err:  # noqa: BLE001 (any failure: the export does not fit its env)
        raise EvaluationError(
            f"{checkpoint}: the policy cannot act on env {env_id!r}'s observations: "
            f"{type(err).__name__}: {err}"
        ) from None
    expected = (1, core.num_agents, *core.action_space.shape)
    if actions.shape != expected:
        raise EvaluationError(
            f"{checkpoint}: the policy's actions have shape {actions.shape[1:]} for "
            f"{len(policy.agents)} agents; env {env_id!r} takes {expected[1:]}"
        )


def _read_curve(metrics: Path) -> list[dict[str, Any]]:
    """metrics.csv rows (as text) with a finite env_steps and score; a torn last line is skipped.

    The score is ``reward_env`` (the task score) where the row has one, else
    ``episode_return_mean``.
    """
    import io

    import pandas as pd

    try:
        text = complete_lines(metrics) if metrics.is_file() else ""
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return []

    def number(column: str) -> pd.Series:
        values = frame[column] if column in frame else pd.Series("", index=frame.index)
        return pd.to_numeric(values, errors="coerce")

    task = frame["reward_env"] if "reward_env" in frame else pd.Series("", index=frame.index)
    score = number("reward_env").where(task != "", number("episode_return_mean"))
    kept = np.isfinite(number("env_steps")) & np.isfinite(score)
    return frame[kept].to_dict("records")


def _run_safety(run_dir: Path) -> dict[str, Any] | None:
    """The ``safety`` section of the run's config.yaml, if any."""
    try:
        config = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    safety = config.get("safety") if isinstance(config, dict) else None
    return safety if isinstance(safety, dict) else None


def _run_checkpoint(run_dir: Path) -> Path:
    """The run's best checkpoint (``summary.json``), else its newest; inside ``run_dir``.

    ``summary.json`` records absolute paths; a run directory that was moved or copied
    (or synced back from cloud storage) is read at its new place, through the path
    relative to the recorded ``run_dir`` (or ``remote``).
    """
    best = _summary_best(run_dir)
    if best is not None and best.is_dir():
        return _inside_run(run_dir, best, f"{SUMMARY_FILE}'s best_checkpoint")
    checkpoints = sorted((run_dir / TRIAL_DIR).glob("checkpoint_*"))
    if not checkpoints:
        raise EvaluationError(f"{run_dir}: the run has no checkpoint ({TRIAL_DIR}/checkpoint_*)")
    return _inside_run(run_dir, checkpoints[-1], "its newest checkpoint")


def _inside_run(run_dir: Path, checkpoint: Path, what: str) -> Path:
    """``checkpoint`` if it (and its policies/) resolve inside ``run_dir``, else refuse."""
    root = run_dir.resolve()
    for place in (checkpoint, checkpoint / EXPORT_DIR):
        if place.exists() and not place.resolve().is_relative_to(root):
            raise EvaluationError(
                f"{run_dir}: {what} ({place}) resolves to {place.resolve()}, outside the run "
                "directory; only policy exports inside the given run directory are read. "
                "Pass that checkpoint directly if you trust it."
            )
    return checkpoint


def _summary_best(run_dir: Path) -> Path | None:
    """Where summary.json's best_checkpoint is now, or None (no summary, no best)."""
    summary = run_dir / SUMMARY_FILE
    if not summary.is_file():
        return None
    try:
        data = json.loads(summary.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise EvaluationError(
            f"{summary}: corrupt run summary, not UTF-8 JSON ({err}); delete it to use the "
            "run's newest checkpoint, or pass a checkpoint directory"
        ) from None
    if not isinstance(data, dict):
        raise EvaluationError(
            f"{summary}: corrupt run summary: expected a JSON object, got "
            f"{type(data).__name__}; delete it to use the run's newest checkpoint"
        )
    best = data.get("best_checkpoint")
    if best is None:
        return None
    if not isinstance(best, str) or not best:
        raise EvaluationError(
            f"{summary}: best_checkpoint must be a path string or null, got {best!r:.80}"
        )
    for key in ("run_dir", "remote"):
        base = data.get(key)
        if isinstance(base, str) and base and best.startswith(base.rstrip("/") + "/"):
            return run_dir / best[len(base.rstrip("/")) + 1 :]
    # Relative: to the run directory. Absolute and elsewhere: _inside_run refuses it.
    return run_dir / best
