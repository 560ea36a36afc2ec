"""Meta-learning over a distribution of tasks (the experiment's ``meta:`` section).

Reptile (the default) and first-order MAML: what runs without Ray, namely the checks
(:func:`check`), the update math, the seeded task sampler and the env switching;
:mod:`rl_platform.advanced.meta_training` holds the RLlib callback and
:func:`rl_platform.adaptation.adapt` the adaptation runs. The methods, their papers
and the tasks: docs/advanced.md, "Meta-learning".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

# On-policy algorithms only: an off-policy replay buffer would carry one task's data
# into the next task's inner loop.
SUPPORTED_ALGORITHMS = ("ppo", "mappo", "ippo")
LEVEL, VARIANT = "level", "variant"

Weights = Mapping[str, Any]  # module id -> {parameter name -> array}, nested


# --------------------------------------------------------------------------- tasks


def env_tasks(env_cls: type) -> dict[str, str]:
    """Every task name the env offers -> its kind (``level`` or ``variant``)."""
    tasks = {name: VARIANT for name in getattr(env_cls, "variants", {}) or {}}
    tasks.update({name: LEVEL for name in getattr(env_cls, "task_levels", ()) or ()})
    return tasks


def task_overrides(env_cls: type, name: str) -> dict[str, Any]:
    """The env config overrides that make a run train on task `name`.

    Raises:
        ValueError: the env has no such task.
    """
    kind = env_tasks(env_cls).get(name)
    if kind is None:
        raise ValueError(_unknown(name, env_cls))
    if kind == LEVEL:
        return {"task": name}
    return dict(env_cls.variants[name])


def _unknown(name: str, env_cls: type) -> str:
    known = ", ".join(sorted(env_tasks(env_cls))) or "(none: it declares no levels or variants)"
    return f"the env has no task {name!r}; expected one of: {known}"


def check(experiment: Any, env_cls: type) -> None:
    """Raise ValueError when the ``meta`` settings cannot run on this env and algorithm."""
    meta = experiment.meta
    offered = env_tasks(env_cls)
    for field in ("tasks", "held_out"):
        names = getattr(meta, field)
        for i, name in enumerate(names):
            if name not in offered:
                raise ValueError(f"{field}[{i}] = {name!r}: {_unknown(name, env_cls)}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{field} lists {', '.join(repeated)} more than once")
    both = sorted(set(meta.tasks) & set(meta.held_out))
    if both:
        raise ValueError(
            f"{', '.join(both)} in both tasks and held_out: held-out tasks are never "
            "trained on during meta-training"
        )
    kinds = {offered[n] for n in [*meta.tasks, *meta.held_out]}
    if len(kinds) > 1:
        raise ValueError(
            "tasks mix task levels and variants of the env; use one kind "
            f"(levels: {', '.join(getattr(env_cls, 'task_levels', ()))})"
        )
    if experiment.curriculum is not None:
        raise ValueError(
            "meta and curriculum both switch the env's task; remove one of the sections"
        )
    if experiment.algorithm.id not in SUPPORTED_ALGORITHMS:
        raise ValueError(
            f"algorithm {experiment.algorithm.id!r} is not supported; meta-learning runs "
            f"on the on-policy algorithms {', '.join(SUPPORTED_ALGORITHMS)} (a replay "
            "buffer would carry one task's data into the next)"
        )
    if meta.method == "fomaml" and meta.inner_iterations < 2:
        raise ValueError(
            "method fomaml needs inner_iterations >= 2: its outer step is the last inner "
            "iteration's update, taken after at least one adaptation iteration"
        )
    _check_meta_step_alignment(experiment)
    if experiment.evaluation.every > 0:
        raise ValueError(
            "evaluation during meta-training is not supported (which task would it "
            "score?); set evaluation.every: 0 and evaluate adapted runs (`rlp adapt`)"
        )


def _check_meta_step_alignment(experiment: Any) -> None:
    """Stops and checkpoints fall on meta-step boundaries, where the learner holds theta."""
    k = experiment.meta.inner_iterations
    stop = experiment.stop
    others = [
        n for n, v in stop.model_dump().items() if v is not None and n != "training_iteration"
    ]
    if stop.training_iteration is None or others or stop.training_iteration % k:
        raise ValueError(
            f"stop must be training_iteration alone and a multiple of inner_iterations ({k}), "
            "so the run ends on a meta-step boundary with the meta-weights in its last "
            f"checkpoint; got stop = {stop.model_dump(exclude_none=True)}"
        )
    if experiment.checkpoint.every % k:
        raise ValueError(
            f"checkpoint.every ({experiment.checkpoint.every}) must be a multiple of "
            f"inner_iterations ({k}) (or 0), so every checkpoint holds the meta-weights"
        )


class TaskSampler:
    """Draws the meta-training tasks uniformly from ``tasks`` with a seeded generator.

    Held-out tasks are not in ``tasks`` (:func:`check`), so they are never drawn.
    """

    def __init__(self, tasks: list[str], seed: int | None) -> None:
        if not tasks:
            raise ValueError("no tasks to sample from")
        self.tasks = list(tasks)
        self._rng = np.random.default_rng(seed)

    def next(self) -> str:
        """The next task."""
        return self.tasks[int(self._rng.integers(len(self.tasks)))]

    def state_dict(self) -> dict[str, Any]:
        """The generator's state (plain Python values), to continue the same sequence."""
        return {"tasks": list(self.tasks), "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (of a run with the same tasks)."""
        if list(state["tasks"]) != self.tasks:
            raise ValueError(
                f"the checkpoint's meta tasks {state['tasks']} differ from {self.tasks}"
            )
        self._rng.bit_generator.state = state["rng"]


# --------------------------------------------------------------------------- updates


def _is_float(value: Any) -> bool:
    floating = getattr(value, "is_floating_point", None)
    if callable(floating):  # a torch tensor
        return bool(floating())
    return np.issubdtype(np.asarray(value).dtype, np.floating)


def _combine(fn: Callable[..., Any], first: Any, *others: Any) -> Any:
    """Apply ``fn`` leaf-wise over nested dicts of arrays (non-float leaves: the last's)."""
    if isinstance(first, Mapping):
        missing = [k for other in others for k in first if k not in other]
        if missing:
            raise KeyError(f"weights differ in their keys: {sorted(set(missing))}")
        return {k: _combine(fn, first[k], *(o[k] for o in others)) for k in first}
    if not _is_float(first):
        return others[-1] if others else first
    return fn(first, *others)


def reptile_update(theta: Weights, adapted: Weights, meta_lr: float) -> dict[str, Any]:
    """Reptile's outer step: ``theta + meta_lr * (adapted - theta)``, leaf-wise."""
    return _combine(lambda t, a: t + meta_lr * (a - t), theta, adapted)


def fomaml_update(
    theta: Weights, before_last: Weights, adapted: Weights, meta_lr: float
) -> dict[str, Any]:
    """First-order MAML's outer step: ``theta + meta_lr * (adapted - before_last)``.

    ``adapted - before_last`` is the last inner iteration's update (minus the learning
    rate times the preconditioned gradient at the adapted weights, on fresh data).
    """
    return _combine(lambda t, b, a: t + meta_lr * (a - b), theta, before_last, adapted)


def outer_update(
    method: str,
    theta: Weights,
    adapted: Weights,
    meta_lr: float,
    before_last: Weights | None = None,
) -> dict[str, Any]:
    """The outer update of ``method`` (``reptile`` or ``fomaml``)."""
    if method == "reptile":
        return reptile_update(theta, adapted, meta_lr)
    if method == "fomaml":
        if before_last is None:
            raise ValueError("fomaml needs the weights before the last inner iteration")
        return fomaml_update(theta, before_last, adapted, meta_lr)
    raise ValueError(f"unknown meta-learning method {method!r}")


def reset_optimizer_state(learner: Any) -> int:
    """Forget the optimizers' moments (Adam's m, v and step) of every module of a learner.

    Keeps one task's gradient statistics from steering the next task's inner loop.

    Returns:
        How many optimizers were reset.
    """
    count = 0
    for module_id in list(learner.module.keys()):
        for _name, optimizer in learner.get_optimizers_for_module(module_id):
            optimizer.state.clear()
            count += 1
    return count


# --------------------------------------------------------------------------- envs


def core_of(env: Any) -> Any:
    """The batched core under an env and its wrappers (``RewardEnv``, ``GlobalStateEnv``)."""
    while not hasattr(env, "core"):
        inner = getattr(env, "inner", None)
        if inner is None:
            raise ValueError(f"{type(env).__name__} has no batched core to switch tasks on")
        env = inner
    return env.core


def switch_env(env: Any, task: str, kind: str) -> None:
    """Put one env (any wrapper of it) on `task`: ``set_task`` for a level, else ``set_variant``."""
    if kind == LEVEL:
        env.set_task(task)
    else:
        core_of(env).set_variant(task)


def switch_runner_env(env: Any, task: str, kind: str) -> int:
    """Switch every sub-env of an env runner's (vector) env; how many were switched."""
    if env is None:  # the local runner of a run with remote runners has no env
        return 0
    subs = getattr(env.unwrapped, "envs", None) or [env]
    for sub in subs:
        switch_env(sub.unwrapped, task, kind)
    return len(subs)
