"""Few-shot adaptation (``rlp adapt``): train a meta-trained run's weights on one task.

:func:`adapt` trains a meta-trained run's weights (or fresh ones, ``scratch=True``) on
one task for a few iterations: a normal run of the run's experiment without ``meta``,
its env set to the task, and ``initial_policies`` the meta-trained export
(:mod:`rl_platform.advanced.meta_training` is the meta-training itself).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rl_platform import registry
from rl_platform.advanced.meta import env_tasks, task_overrides
from rl_platform.checkpoints import EXPORT_DIR
from rl_platform.runs import CONFIG_FILE, SUMMARY_FILE, TRIAL_DIR, read_json
from rl_platform.training import train

log = logging.getLogger(__name__)


class AdaptError(ValueError):
    """A source that cannot be adapted from (no meta-trained run) or a task it lacks."""


def meta_checkpoint(source: str | Path) -> tuple[Path, Path]:
    """(run directory, checkpoint with the meta-weights) of a meta-training run or checkpoint.

    A run directory gives its last checkpoint (the final meta-weights; checkpoints of a
    meta-training run are not ranked by return, which mixes tasks).

    Raises:
        AdaptError: no such run or checkpoint, or it holds no policy export.
    """
    path = Path(source)
    if not path.exists():
        raise AdaptError(f"{path}: no such run directory or checkpoint.")
    if (path / CONFIG_FILE).is_file():
        run_dir = path
        summary = read_json(path / SUMMARY_FILE) or {}
        last = summary.get("last_checkpoint")
        checkpoint = Path(last) if last else None
        if checkpoint is None or not checkpoint.is_dir():
            found = sorted((path / TRIAL_DIR).glob("checkpoint_*"))
            checkpoint = found[-1] if found else None
        if checkpoint is None:
            raise AdaptError(f"{path}: the run has no checkpoint yet.")
    elif (path.parent.parent / CONFIG_FILE).is_file():  # <run>/trial/checkpoint_*
        run_dir, checkpoint = path.parent.parent, path
    else:
        raise AdaptError(f"{path}: not a run directory or a checkpoint of one (no {CONFIG_FILE}).")
    if not (checkpoint / EXPORT_DIR).is_dir():
        raise AdaptError(f"{checkpoint}: holds no policies/ export to start from.")
    return run_dir, checkpoint


def adaptation_experiment(
    source: str | Path,
    task: str,
    iterations: int | None = None,
    *,
    scratch: bool = False,
    seed: int | None = None,
) -> dict[str, Any]:
    """The experiment (as a dict) of an adaptation run; see :func:`adapt`.

    Raises:
        AdaptError: `source` is not a meta-training run, or its env has no task `task`.
    """
    run_dir, checkpoint = meta_checkpoint(source)
    raw = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    meta = raw.get("meta")
    if not meta:
        raise AdaptError(f"{run_dir}: not a meta-training run (its experiment has no meta).")
    env_cls = registry.get_env(raw["env"]["id"]).load()
    offered = env_tasks(env_cls)
    kind = offered.get(meta["tasks"][0])
    if offered.get(task) != kind:
        same = ", ".join(sorted(n for n, k in offered.items() if k == kind))
        raise AdaptError(
            f"--task {task}: env {raw['env']['id']!r} has no such task {kind}; the run was "
            f"meta-trained on its {kind}s, expected one of: {same}."
        )
    overrides = task_overrides(env_cls, task)
    if task in meta.get("tasks", []):
        log.warning("task %s was a meta-training task, not a held-out one", task)
    raw.pop("meta")
    raw["env"]["config"] = {**raw["env"]["config"], **overrides}
    start = "scratch" if scratch else "adapted"
    raw["name"] = f"{raw['name']}-{start}-{task}"
    raw["stop"] = {"training_iteration": iterations or int(meta.get("inner_iterations", 1))}
    raw["checkpoint"] = {**raw.get("checkpoint", {}), "every": 0}
    raw["initial_policies"] = None if scratch else str((checkpoint / EXPORT_DIR).resolve())
    if seed is not None:
        raw["seed"] = seed
    return raw


def adapt(
    source: str | Path,
    task: str,
    iterations: int | None = None,
    *,
    scratch: bool = False,
    seed: int | None = None,
    output: str | Path | None = None,
    address: str | None = None,
    progress: Callable[[Any], None] | None = None,
    verbose: bool = False,
) -> Any:
    """Few-shot adaptation: train a meta-trained run's weights on `task` for a few iterations.

    A normal training run (its own run directory, checkpoint and ``policies/`` export):
    the meta-training run's experiment without ``meta``, the env set to `task`, stopped
    after `iterations` (default: the run's ``meta.inner_iterations``), starting from the
    meta-weights of `source`'s last checkpoint, or from fresh weights when `scratch`
    (the comparison: training from scratch with the same budget).

    Args:
        source: a meta-training run directory or one of its checkpoints.
        task: a task of the env (a level or variant), usually one of ``meta.held_out``.
        iterations: training iterations of the adaptation.
        scratch: start from fresh weights instead of the meta-weights.
        seed: the run's seed (default: the meta-training run's).
        output: parent of the run directory (as for :func:`~rl_platform.training.train`).
        address: a Ray cluster address; a private local Ray when None.
        progress: called with each iteration's figures.
        verbose: let Ray's and the workers' logs through.

    Returns:
        The run's :class:`~rl_platform.training.TrainResult`.

    Raises:
        AdaptError: `source` is not a meta-training run with a checkpoint, or its env
            has no task `task`.
    """
    raw = adaptation_experiment(source, task, iterations, scratch=scratch, seed=seed)
    return train(raw, output=output, address=address, progress=progress, verbose=verbose)
