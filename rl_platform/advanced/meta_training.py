"""Meta-training in RLlib (an ``RLlibCallback``) and few-shot adaptation (``rlp adapt``).

:class:`MetaLearningCallback` turns any supported algorithm's ordinary training
iterations into Reptile / first-order MAML meta-steps (:mod:`rl_platform.advanced.meta`
has the math) without forking the algorithm. After each iteration, in the driver:

1. the iteration's episode returns are recorded for the current task (the first inner
   iteration samples with the meta-weights: the return *before* adaptation; the last
   one samples after ``inner_iterations - 1`` updates: the return *after*);
2. at the end of a meta-step the learner's module weights become the outer update of
   the meta-weights, the optimizers' moments are cleared, the next task is drawn and
   set on every env of every env runner, and the weights are pushed to the runners.

Stops and checkpoints fall on meta-step boundaries (:func:`~rl_platform.advanced.meta.check`
refuses others), so every checkpoint, and its ``policies/`` export, holds the
meta-weights; the task sampler and the meta-step counter go into the algorithm's
checkpointed metrics, so a resumed run continues the same task sequence. Results carry
``meta/``: ``task``, ``meta_step``, ``inner_iteration``, ``return_before``/``return_after``
of the last finished meta-step and ``tasks/<name>/before|after`` (the latest per task).

:func:`adapt` trains a meta-trained run's weights (or fresh ones, ``scratch=True``) on
one task for a few iterations: a normal run of the run's experiment without ``meta``,
its env set to the task, and ``initial_policies`` the meta-trained export.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from rl_platform.advanced.meta import (
    TaskSampler,
    env_tasks,
    outer_update,
    reset_optimizer_state,
    switch_runner_env,
    task_overrides,
)
from rl_platform.config import MetaSpec
from rl_platform.curriculum import checkpointed_state

log = logging.getLogger(__name__)

RESULT_KEY = "meta"
STATE_KEY = "meta_state"  # in the algorithm's MetricsLogger (checkpointed)
RETURNS_KEY = (RESULT_KEY, "returns")  # env runners -> driver: each episode's return


def set_task_everywhere(algorithm: Any, task: str, kind: str) -> int:
    """Put every env of the algorithm's env runners on `task`; how many were switched."""
    return set_task_in_group(algorithm.env_runner_group, task, kind)


def set_task_in_group(group: Any, task: str, kind: str, runner_ids: list[int] | None = None) -> int:
    """Switch the envs of an env runner group (only `runner_ids` if given)."""
    counts = group.foreach_env_runner(
        lambda runner: switch_runner_env(getattr(runner, "env", None), task, kind),
        local_env_runner=runner_ids is None,
        remote_worker_ids=runner_ids,
    )
    return sum(c for c in counts if isinstance(c, int))


class MetaLearningCallback(RLlibCallback):
    """Drives meta-training; :func:`callback_class` binds it to an experiment."""

    spec: ClassVar[dict[str, Any]] = {}  # meta spec, seed, task kind

    def __init__(self) -> None:
        super().__init__()
        self.meta: MetaSpec | None = None
        self.sampler: TaskSampler | None = None
        self.task = ""
        self.meta_step = 0
        self.inner = 0  # inner iterations done in the current meta-step
        self.theta: dict[str, Any] | None = None  # meta-weights at the meta-step's start
        self.before_last: dict[str, Any] | None = None  # fomaml: weights before the last
        self.return_before = math.nan
        self.last: dict[str, Any] = {}  # figures of the last finished meta-step
        self.per_task: dict[str, dict[str, float]] = {}

    # ---- env runner side

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs):  # noqa: D102
        if metrics_logger is not None:
            metrics_logger.log_value(RETURNS_KEY, float(episode.get_return()), reduce="item_series")

    # ---- driver side

    def on_algorithm_init(self, *, algorithm, **kwargs):  # noqa: D102
        self.meta = MetaSpec.model_validate(self.spec["meta"])
        self.sampler = TaskSampler(self.meta.tasks, self.spec["seed"])
        self._start_meta_step(algorithm)

    def on_checkpoint_loaded(self, *, algorithm, **kwargs):  # noqa: D102
        if self.meta is None:
            return
        state = checkpointed_state(algorithm, STATE_KEY)
        if state is None:
            return
        self.sampler.load_state_dict(state["sampler"])
        self.meta_step, self.task = int(state["meta_step"]), str(state["task"])
        self.per_task = {k: dict(v) for k, v in state.get("per_task", {}).items()}
        self.inner = 0
        self.theta = algorithm.learner_group.get_weights()  # a boundary: the meta-weights
        set_task_everywhere(algorithm, self.task, self.spec["kind"])
        self._store(algorithm)
        log.info("meta-training restored at meta-step %d, task %s", self.meta_step, self.task)

    def on_env_runners_recreated(self, *, env_runner_group, env_runner_indices, **kwargs):  # noqa: D102
        if self.task:
            set_task_in_group(
                env_runner_group, self.task, self.spec["kind"], list(env_runner_indices)
            )

    def on_train_result(self, *, algorithm, result, **kwargs):  # noqa: D102
        if self.meta is None:
            return
        result.pop(STATE_KEY, None)
        ret = _pop_mean_return(result)
        self.inner += 1
        if self.inner == 1:
            self.return_before = ret
        k = self.meta.inner_iterations
        if self.meta.method == "fomaml" and self.inner == k - 1:
            self.before_last = algorithm.learner_group.get_weights()
        metrics = {"task": self.task, "meta_step": self.meta_step, "inner_iteration": self.inner}
        if self.inner == k:
            self._finish_meta_step(algorithm, ret)
            self._start_meta_step(algorithm)
        metrics.update(self.last)
        metrics["tasks"] = {t: dict(v) for t, v in self.per_task.items()}
        result[RESULT_KEY] = metrics

    def _finish_meta_step(self, algorithm: Any, return_after: float) -> None:
        """The outer update: new meta-weights into the learner, optimizers cleared."""
        adapted = algorithm.learner_group.get_weights()
        theta = outer_update(
            self.meta.method, self.theta, adapted, self.meta.meta_lr, self.before_last
        )
        algorithm.learner_group.set_weights(theta)
        algorithm.learner_group.foreach_learner(reset_optimizer_state)
        self.last = {
            "finished_task": self.task,
            "return_before": self.return_before,
            "return_after": return_after,
        }
        self.per_task[self.task] = {"before": self.return_before, "after": return_after}
        self.meta_step += 1

    def _start_meta_step(self, algorithm: Any) -> None:
        """Draw the next task, switch the envs, push the meta-weights to the runners."""
        from rl_platform.algorithms.common import sync_env_runner_weights

        self.task = self.sampler.next()
        self.inner = 0
        self.before_last = None
        self.theta = algorithm.learner_group.get_weights()
        set_task_everywhere(algorithm, self.task, self.spec["kind"])
        sync_env_runner_weights(algorithm)
        self._store(algorithm)

    def _store(self, algorithm: Any) -> None:
        """Keep the state with the algorithm's (checkpointed) metrics."""
        state = {
            "meta_step": self.meta_step,
            "task": self.task,
            "sampler": self.sampler.state_dict(),
            "per_task": self.per_task,
        }
        algorithm.metrics.log_value(STATE_KEY, state, reduce="item")


def _pop_mean_return(result: dict[str, Any]) -> float:
    """Mean return of the episodes that ended in this iteration (taken out of the result)."""
    runners = result.get("env_runners", {})
    section = runners.get(RESULT_KEY, {})
    returns = section.pop("returns", []) if isinstance(section, dict) else []
    if isinstance(section, dict) and not section:
        runners.pop(RESULT_KEY, None)
    values = [float(r) for r in returns or [] if math.isfinite(float(r))]
    return float(np.mean(values)) if values else math.nan


def callback_class(experiment: Any) -> type[MetaLearningCallback]:
    """A :class:`MetaLearningCallback` subclass bound to the experiment's ``meta``."""
    from rl_platform import registry

    env_cls = registry.get_env(experiment.env.id).load()
    spec = {
        "meta": experiment.meta.model_dump(mode="json"),
        "seed": experiment.seed,
        "kind": env_tasks(env_cls)[experiment.meta.tasks[0]],
    }
    return type("BoundMetaLearningCallback", (MetaLearningCallback,), {"spec": spec})


# --------------------------------------------------------------------------- adaptation


class AdaptError(ValueError):
    """A source that cannot be adapted from (no meta-trained run) or a task it lacks."""


def meta_checkpoint(source: str | Path) -> tuple[Path, Path]:
    """(run directory, checkpoint with the meta-weights) of a meta-training run or checkpoint.

    A run directory gives its last checkpoint (the final meta-weights; checkpoints of a
    meta-training run are not ranked by return, which mixes tasks).

    Raises:
        AdaptError: no such run or checkpoint, or it holds no policy export.
    """
    from rl_platform.checkpoints import EXPORT_DIR
    from rl_platform.runs import CONFIG_FILE, SUMMARY_FILE, TRIAL_DIR, read_json

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
    import yaml

    from rl_platform import registry
    from rl_platform.checkpoints import EXPORT_DIR
    from rl_platform.runs import CONFIG_FILE

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
    from rl_platform.training import train

    raw = adaptation_experiment(source, task, iterations, scratch=scratch, seed=seed)
    return train(raw, output=output, address=address, progress=progress, verbose=verbose)
