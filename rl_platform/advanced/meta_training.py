"""Meta-training in RLlib: an ``RLlibCallback`` and the ``meta`` feature.

:class:`MetaLearningCallback` turns any supported algorithm's ordinary training
iterations into Reptile / first-order MAML meta-steps (:mod:`rl_platform.advanced.meta`
has the math) without forking the algorithm. What it does after each iteration, and
the ``meta/`` results: docs/advanced.md, "Meta-learning". Few-shot adaptation from the
meta-weights (``rlp adapt``) is :mod:`rl_platform.adaptation`.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from rl_platform import registry
from rl_platform.advanced.meta import (
    TaskSampler,
    check,
    env_tasks,
    outer_update,
    reset_optimizer_state,
    switch_runner_env,
)
from rl_platform.algorithms.common import sync_env_runner_weights
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
    env_cls = registry.get_env(experiment.env.id).load()
    spec = {
        "meta": experiment.meta.model_dump(mode="json"),
        "seed": experiment.seed,
        "kind": env_tasks(env_cls)[experiment.meta.tasks[0]],
    }
    return type("BoundMetaLearningCallback", (MetaLearningCallback,), {"spec": spec})


class MetaFeature(registry.Feature):
    """``meta:``: Reptile / first-order MAML meta-steps over ordinary training iterations."""

    def validate(self, experiment: Any, env_cls: type) -> None:  # noqa: D102
        if experiment.meta is not None:
            check(experiment, env_cls)

    def callbacks(self, experiment: Any) -> list[type]:  # noqa: D102
        return [] if experiment.meta is None else [callback_class(experiment)]


FEATURE = MetaFeature()
