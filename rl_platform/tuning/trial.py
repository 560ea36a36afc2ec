"""What runs in Tune: one sweep trial (a ``Trainable``) and the driver's progress callback."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ray import tune as ray_tune

from rl_platform import registry
from rl_platform.resume import trim_trial_tables
from rl_platform.stopping import criteria_met, lookup_metric
from rl_platform.training import build_algorithm_config
from rl_platform.tuning.metrics import sampled_env_steps
from rl_platform.tuning.plan import SweepPlan


class SweepTrial(ray_tune.Trainable):
    """One trial: the sweep's experiment with the trial's values, built like ``rlp train``.

    ``config`` holds the sampled values by parameter name; ``plan`` the sweep. The env
    entry is registered in the worker too, so envs registered at runtime (plugins,
    tests) work in trials as they do in ``rlp train``.
    """

    def setup(  # noqa: D102
        self, config: dict[str, Any], plan: SweepPlan, env_entry: registry.EnvEntry | None
    ) -> None:
        if env_entry is not None and env_entry.id not in registry.ENVS:
            registry.register_env(env_entry)
        self.metric = plan.spec.metric
        self.experiment = plan.trial_experiment(config)
        self.algo = build_algorithm_config(self.experiment).build_algo()

    def step(self) -> dict[str, Any]:  # noqa: D102
        result = self.algo.train()
        # Tune refuses a first result without the metric (no episode finished yet)
        if lookup_metric(result, self.metric) is None:
            node = result
            *parents, last = self.metric.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node.setdefault(last, math.nan)
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> None:  # noqa: D102
        self.algo.save_checkpoint(checkpoint_dir)

    def load_checkpoint(self, checkpoint: str | dict) -> None:  # noqa: D102
        self.algo.load_checkpoint(checkpoint)

    def cleanup(self) -> None:  # noqa: D102
        self.algo.stop()


@dataclass(frozen=True)
class TrialEvent:
    """What the progress display shows: a trial started, reported, ended or is retried.

    ``kind`` is ``start``, ``result``, ``complete``, ``error`` or ``retry``; a
    ``complete`` event's ``status`` says whether the trial reached the stop criterion
    (``complete``) or the scheduler stopped it (``stopped early``).
    """

    kind: str
    trial_id: str
    metric: str = ""
    status: str = ""
    iteration: int = 0
    value: float | None = None
    env_steps: int = 0
    params: dict[str, Any] = field(default_factory=dict)


_progress_sink: Callable[[TrialEvent], None] | None = None


def set_progress_sink(sink: Callable[[TrialEvent], None] | None) -> None:
    """Where :class:`SweepProgress` sends its events in this process (None: nowhere)."""
    global _progress_sink
    _progress_sink = sink


class SweepProgress(ray_tune.Callback):
    """In the driver: turns Tune's trial events into :class:`TrialEvent` for the display."""

    def __init__(self, metric: str, stop: dict[str, float]) -> None:
        self.metric = metric
        self.stop = stop
        self._written: dict[str, int] = {}  # trial id -> the last iteration in its tables

    def _emit(self, event: TrialEvent) -> None:
        if _progress_sink is not None:
            _progress_sink(replace(event, metric=self.metric))

    def on_trial_start(self, iteration, trials, trial, **info):  # noqa: D102
        self._emit(TrialEvent("start", trial.trial_id, params=dict(trial.config)))

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: D102
        done = int(result.get("training_iteration", 0))
        last = self._written.get(trial.trial_id)
        if last is None or done <= last:
            # resumed or retried from a checkpoint: this iteration and the ones after it
            # are written again (before Tune's loggers append theirs)
            trim_trial_tables(Path(trial.local_path), done - 1, in_place=True)
        self._written[trial.trial_id] = done
        self._emit(
            TrialEvent(
                "result",
                trial.trial_id,
                iteration=int(result.get("training_iteration", 0)),
                value=lookup_metric(result, self.metric),
                env_steps=sampled_env_steps(result),
            )
        )

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: D102
        result = trial.last_result or {}
        self._emit(
            TrialEvent(
                "complete",
                trial.trial_id,
                status="complete" if criteria_met(self.stop, result) else "stopped early",
                iteration=int(result.get("training_iteration", 0)),
                value=lookup_metric(result, self.metric),
                env_steps=sampled_env_steps(result),
            )
        )

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: D102
        self._emit(TrialEvent("error", trial.trial_id))

    def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: D102
        self._emit(TrialEvent("retry", trial.trial_id, iteration=trial.num_failures))


def trial_dirname(trial: Any) -> str:
    """A sweep trial's folder name: ``trial_<id>``."""
    return f"trial_{trial.trial_id}"
