"""Train one experiment: ExperimentConfig -> RLlib AlgorithmConfig -> a one-trial Tune run.

Training goes through Tune even for a single run so that ``rlp train`` and ``rlp tune``
share one path (checkpointing, loggers, failure handling, restore). A run directory
``<output>/<name>/<timestamp>/`` holds:

* ``config.yaml``: the resolved experiment (re-runs it exactly);
* ``metrics.csv``: the run's one table, a row per iteration: the progress figures, then
  the monitor's per-module figures (the trial folder has Tune's own ``progress.csv``,
  ``result.json`` and TensorBoard event files);
* ``trial/checkpoint_*``: RLlib checkpoints (every N iterations, the best K kept);
* Tune's experiment state (what ``--resume`` restores from);
* ``summary.json``: status, best and last checkpoint, figures, written at the end.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rl_platform.builder import build_algorithm_config, choose_sampler
from rl_platform.config import ConfigError, ExperimentConfig, load_experiment
from rl_platform.monitoring.io import append_table_row, complete_lines
from rl_platform.monitoring.results import table_row
from rl_platform.progress import IterationRow, RunStart, StreamProgress
from rl_platform.ray_session import (
    quiet_logs,
    signals_ignored,
    start_checked,
)
from rl_platform.resume import (
    RUN_SEARCH_STATE,
    ResumeError,
    check_tune_state,
    resumed,
    trim_run_tables,
    trim_tables,
    trim_trial_tables,
)
from rl_platform.runs import (
    CONFIG_FILE,
    TRIAL_DIR,
    RunDir,
    check_free,
    hold,
    holds_directories,
    new_run_dir,
    output_dir,
)
from rl_platform.stopping import (
    ENV_STEPS_KEY,
    RETURN_KEY,
    criteria_met,
    lookup_metric,
    stop_criteria,
    stop_reached,
)
from rl_platform.tracking import check_tracking, tracking_callbacks, trial_namer
from rl_platform.trust import check_own_state

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """The trial failed after its retries; the message points at Tune's error file."""


@dataclass
class TrainResult:
    """The outcome of :func:`train`: where everything is and the headline figures."""

    run_dir: Path
    status: str  # "finished", "interrupted" or "error"
    iterations: int = 0
    env_steps: int = 0
    episode_return_mean: float | None = None
    best_checkpoint: Path | str | None = None  # a URI string for runs on cloud storage
    best_metric: float | None = None
    last_checkpoint: Path | str | None = None
    remote: str | None = None  # the run directory's URI when `output` is cloud storage
    wall_time_s: float = 0.0
    env_steps_per_s: float = 0.0
    metric: str = RETURN_KEY
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (paths as strings, the full last result left out)."""
        data = asdict(self)
        data.pop("metrics")
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


def _progress_hooks(
    progress: Callable[[IterationRow], None] | bool | None,
    on_start: Callable[[RunStart], None] | None,
) -> tuple[Callable[[IterationRow], None] | None, Callable[[RunStart], None] | None]:
    """The row sink and start hook for `progress` (True: :class:`StreamProgress` on stderr)."""
    if progress is True:
        default = StreamProgress()
        return default, on_start or default.start
    if progress is False or progress is None:
        return None, on_start
    return progress, on_start


_progress_sink: Callable[[IterationRow], None] | None = None


def set_progress_sink(sink: Callable[[IterationRow], None] | None) -> None:
    """Where the run callbacks send their rows in this process (None: nowhere)."""
    global _progress_sink
    _progress_sink = sink


def _make_progress_callback(
    run_dir: Path,
    reward_names: list[str],
    monitor: Any = None,
    remote: str | None = None,
    seed: int | None = None,
):
    from ray.tune import Callback

    class RunCallback(Callback):
        """In the driver: metrics.csv, anomalies.jsonl, the progress display, exports."""

        seed: int | None = None  # (states pickled before seeds were added lack it)

        def __init__(
            self,
            run_dir: Path,
            reward_names: list[str],
            monitor: Any,
            remote: str | None,
            seed: int | None,
        ) -> None:
            self.run_dir = run_dir
            self.reward_names = reward_names
            self.monitor = monitor
            self.remote = remote
            self.seed = seed
            self._last: tuple[float, float] | None = None
            self._written: int | None = None  # the last iteration in the tables

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: D102
            row = replace(iteration_row(result, self._last), seed=self.seed)
            if self._written is None or row.iteration <= self._written:
                # resumed or retried from a checkpoint: this iteration and the ones after
                # it are written again (before Tune's loggers append theirs)
                trim_run_tables(self.run_dir, row.iteration - 1, in_place=True)
                trim_trial_tables(Path(trial.local_path), row.iteration - 1, in_place=True)
            self._written = row.iteration
            if self.monitor is not None:
                row.anomalies.extend(a.message for a in self.monitor.observe(result))
            self._last = (row.env_steps, row.time_total_s)
            table = table_row(row.csv_row(self.reward_names), result)
            append_table_row(RunDir(self.run_dir).metrics, table)
            if _progress_sink is not None:
                _progress_sink(row)

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):  # noqa: D102
            from rl_platform.checkpoints import export_for_run
            from rl_platform.storage import export_remote_checkpoint, upload_driver_files

            try:
                if self.remote is None:
                    export_for_run(checkpoint.path, self.run_dir)
                else:
                    export_remote_checkpoint(checkpoint, self.run_dir)
                    upload_driver_files(self.run_dir, self.remote)
            except Exception as err:  # noqa: BLE001 (an export must never stop training)
                log.warning("could not export policies of %s: %s", checkpoint.path, err)

        def __getstate__(self) -> dict[str, Any]:
            return {
                "run_dir": self.run_dir,
                "reward_names": self.reward_names,
                "monitor": self.monitor,
                "remote": self.remote,
                "seed": self.seed,
                "_last": None,
                "_written": None,
            }

    return RunCallback(run_dir, reward_names, monitor, remote, seed)


def iteration_row(result: dict[str, Any], last: tuple[float, float] | None) -> IterationRow:
    """Pick the displayed figures out of a (nested) RLlib result dict."""
    runners = result.get("env_runners", {})
    env_steps = int(result.get(ENV_STEPS_KEY, runners.get(ENV_STEPS_KEY, 0)) or 0)
    total = float(result.get("time_total_s", 0.0))
    prev_steps, prev_time = last or (0.0, total - float(result.get("time_this_iter_s", total)))
    elapsed = total - prev_time
    rate = (env_steps - prev_steps) / elapsed if elapsed > 0 else 0.0
    ret = runners.get("episode_return_mean", math.nan)
    curriculum = result.get("curriculum") or {}
    change = ""
    if curriculum.get("changed"):
        moved = "promoted" if curriculum["changed"] > 0 else "demoted"
        score = curriculum.get("change_score", math.nan)
        change = f"{moved} to {curriculum.get('level_name')} (window score {score:.2f})"
    iteration = int(result.get("training_iteration", 0))
    evaluation = result.get("evaluation") or {}
    if evaluation.get("iteration") != iteration:
        evaluation = {}  # carried forward from an earlier iteration
    return IterationRow(
        iteration=iteration,
        env_steps=env_steps,
        episode_return_mean=float(ret) if ret is not None else math.nan,
        env_steps_per_s=rate,
        time_total_s=total,
        level=str(curriculum.get("level_name", "")),
        level_change=change,
        rewards={k: float(v) for k, v in (runners.get("rewards") or {}).items()},
        evaluation=dict(evaluation),
        curiosity={k: float(v) for k, v in (result.get("curiosity") or {}).items()},
    )


# --------------------------------------------------------------------------- train


@holds_directories
def train(
    source: str | Path | dict[str, Any] | ExperimentConfig,
    overrides: list[str] | dict[str, Any] | None = None,
    *,
    output: str | Path | None = None,
    address: str | None = None,
    resume: str | Path | None = None,
    progress: Callable[[IterationRow], None] | bool | None = True,
    verbose: bool = False,
    trust: bool = False,
    notice: Callable[[str], None] | None = None,
    on_start: Callable[[RunStart], None] | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train an experiment (or resume an interrupted run) and summarise it.

    Resuming unpickles the run's Tune and RLlib state, which can run code of whoever
    wrote it: only directories this user alone can write are resumed, unless `trust`.

    Args:
        source: experiment YAML path, dict or config (ignored when resuming).
        overrides: ``key.path=value`` overrides, validated like the file.
        output: parent of the run directories (``<output>/<name>/<timestamp>``); default
            the experiment's ``storage``, else ``runs``.
        address: a Ray cluster address; a private local Ray is started when None.
        resume: a run directory to continue from its last checkpoint.
        progress: True (default): the run directory, then one line per iteration on
            stderr (:class:`StreamProgress`); False or None: silent; a callable: called
            with each iteration's :class:`IterationRow` (in the calling process).
        verbose: let Ray's and the workers' logs through.
        trust: resume even from a directory others can write (``--trust``).
        notice: called once with the sampler line (which env runner samples, and why
            not the batched one; :class:`~rl_platform.builder.SamplerChoice`).
        on_start: called once with the :class:`RunStart` (the run directory exists, Ray
            has not started yet).
        callbacks: more Tune callbacks (``ray.tune.Callback``), after the platform's own
            and the trackers of the ``tracking`` section. Tune saves them with the run's
            state: a resume runs those the run started with.

    Raises:
        ConfigError: the experiment is invalid; nothing was started or written.
        ResumeError: `resume` is not a resumable run directory.
        UntrustedStateError: `resume` is not this user's own (see `trust`).
        TrainingError: the trial failed beyond its retries.
    """
    from rl_platform.storage import is_uri, join, staging_root, upload_driver_files

    quiet_logs(verbose)
    if is_uri(resume):
        raise ResumeError(
            f"{resume}: resume a run on cloud storage from a local copy of its directory."
        )
    trials = []
    if resume is not None:
        run_dir = Path(resume)
        experiment = _check_resumable(run_dir)
        check_own_state(run_dir, trust=trust)  # before anything of it is unpickled
        check_free(run_dir)  # another process resuming it may be writing its state
        trials = check_tune_state(run_dir, RUN_SEARCH_STATE, resume_errored=True)
        hold(run_dir)  # until train returns: a second resume of it is refused
    else:
        experiment = load_experiment(source, overrides)
    check_tracking(experiment)
    algo_config = build_algorithm_config(experiment)
    tell_sampler(experiment, notice)
    progress, on_start = _progress_hooks(progress, on_start)

    remote = None
    if resume is None:
        target = output if output is not None else experiment.storage
        if is_uri(target):  # Tune writes to the URI; the driver's files are staged here
            run_dir = new_run_dir(staging_root(), experiment.name)
            remote = join(str(target), experiment.name, run_dir.name)
        else:
            run_dir = new_run_dir(output_dir(output, experiment), experiment.name)
        hold(run_dir)
        RunDir(run_dir).config.write_text(experiment.to_yaml())
    if on_start is not None:
        on_start(RunStart(run_dir, stop_criteria(experiment), remote, resume is not None))

    # refused before anything ran: no run directory is left behind
    start_checked(
        experiment, algo_config, address, verbose, discard=run_dir if resume is None else None
    )
    from ray import tune

    global _progress_sink
    _progress_sink = progress
    started = time.monotonic()
    results = None
    try:
        if resume is not None:
            # the rows after the checkpoint it restores from are written again
            trim_tables(run_dir, resumed(trials))
            tuner = tune.Tuner.restore(
                str(run_dir.resolve()),
                trainable=algo_config.algo_class,
                param_space=algo_config,
                resume_unfinished=True,
                resume_errored=True,
            )
        else:
            tuner = tune.Tuner(
                algo_config.algo_class,
                param_space=algo_config,
                tune_config=tune.TuneConfig(
                    num_samples=1,
                    trial_dirname_creator=_trial_dirname,
                    trial_name_creator=trial_namer(
                        f"{experiment.name}/{run_dir.name}", _trial_dirname
                    ),
                ),
                run_config=_run_config(experiment, run_dir, remote, callbacks),
            )
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM: Tune did not stop gracefully
        log.info("interrupted; Tune's last saved state is what a resume continues from")
    finally:
        _progress_sink = None
    with signals_ignored():  # the summary is written whole, whatever comes now
        elapsed = time.monotonic() - started
        if results is None:
            summary = _interrupted_summary(experiment, run_dir, elapsed, remote)
        else:
            summary = _summarize(experiment, run_dir, results, elapsed, remote)
        previous = RunDir(run_dir).read_summary()
        if previous and previous.get("wall_time_s"):
            summary.wall_time_s += float(previous["wall_time_s"])
        RunDir(run_dir).write_summary(summary.to_json())
        if remote is not None:
            upload_driver_files(run_dir, remote)
    if summary.status == "error":
        raise TrainingError(summary.error or "the trial failed")
    return summary


def tell_sampler(experiment: ExperimentConfig, notice: Callable[[str], None] | None) -> None:
    """Hand `notice` the experiment's sampler line, if it has one (``rlp train``, ``rlp tune``)."""
    line = choose_sampler(experiment).line()
    if line is not None and notice is not None:
        notice(line)


def _trial_dirname(trial: Any) -> str:
    return TRIAL_DIR


def _run_config(
    experiment: ExperimentConfig,
    run_dir: Path,
    remote: str | None = None,
    extra: Sequence[Any] = (),
):
    from rl_platform.monitoring import RunMonitor
    from rl_platform.rewards import reward_parts

    monitor = None
    if experiment.monitoring.enabled:
        monitor = RunMonitor(experiment.monitoring, run_dir.resolve())
    progress = _make_progress_callback(run_dir.resolve(), reward_parts(experiment), monitor, remote)
    storage = remote.rsplit("/", 1)[0] if remote else None
    return tune_run_config(experiment, run_dir, [progress], monitor, storage, extra=extra)


def tune_run_config(
    experiment: ExperimentConfig,
    run_dir: Path,
    callbacks: list[Any],
    monitor: Any = None,
    storage: str | None = None,
    *,
    group: str | None = None,
    extra: Sequence[Any] = (),
):
    """Tune's RunConfig for runs in `run_dir` with the experiment's stop, checkpoint, failures.

    ``rlp train`` and ``rlp tune`` share it; each passes its own progress callbacks, which
    come first, then the trackers of the ``tracking`` section (W&B ``group``: see
    :func:`~rl_platform.tracking.tracking_callbacks`), then the caller's ``extra`` ones.
    ``monitor`` (one trial's :class:`~rl_platform.monitoring.RunMonitor`) also stops the
    run on the anomaly kinds in ``monitoring.stop_on``. ``storage``: a URI Tune writes the
    run to instead of ``run_dir``'s parent (:mod:`rl_platform.storage`).
    """
    from ray import tune

    ckpt = experiment.checkpoint
    criteria = stop_criteria(experiment)
    stop: Any = criteria
    if monitor is not None and monitor.spec.stop_on:
        from ray.tune.stopper import CombinedStopper, FunctionStopper

        from rl_platform.monitoring import anomaly_stopper

        stop = CombinedStopper(
            anomaly_stopper(monitor),
            FunctionStopper(lambda _trial_id, result: criteria_met(criteria, result)),
        )
    return tune.RunConfig(
        name=run_dir.name,
        storage_path=storage or str(run_dir.parent.resolve()),
        stop=stop,
        verbose=0,
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=ckpt.keep,
            checkpoint_score_attribute=ckpt.metric,
            checkpoint_score_order=ckpt.mode,
            checkpoint_frequency=ckpt.every,
            checkpoint_at_end=True,
        ),
        failure_config=tune.FailureConfig(max_failures=experiment.resources.max_failures),
        callbacks=[
            *callbacks,
            *tracking_callbacks(
                experiment, f"{storage}/{run_dir.name}" if storage else run_dir, group
            ),
            *extra,
        ],
    )


def _check_resumable(run_dir: Path) -> ExperimentConfig:
    """The run's experiment; ResumeError if it is no run directory or finished (no pickles)."""
    run = RunDir(run_dir)
    if not run_dir.is_dir():
        raise ResumeError(f"{run_dir}: no such run directory.")
    if not run.config.is_file():
        raise ResumeError(f"{run_dir}: not a run directory (no {CONFIG_FILE}).")
    if not run.has_tune_state():
        raise ResumeError(
            f"{run_dir}: holds no Tune experiment state to resume from "
            "(the run was stopped before its first iteration); start it again instead."
        )
    summary = run.read_summary()
    if summary and summary.get("status") == "finished":
        raise ResumeError(
            f"{run_dir}: the run already finished ({summary.get('iterations')} iterations); "
            "nothing to resume. Start a new run to train longer."
        )
    try:
        experiment = load_experiment(run.config)
    except ConfigError as err:
        raise ResumeError(f"{run_dir}: its {CONFIG_FILE} no longer validates: {err}") from None
    return experiment


def _interrupted_summary(
    experiment: ExperimentConfig, run_dir: Path, wall_time_s: float, remote: str | None
) -> TrainResult:
    """The summary of a run stopped before Tune could return: from the files it wrote."""
    try:
        rows = _read_metrics(RunDir(run_dir).metrics)
    except (TypeError, ValueError):  # a row cut short by the interruption
        rows = []
    last = rows[-1] if rows else {}
    checkpoints = sorted(RunDir(run_dir).trial.glob("checkpoint_*")) if remote is None else []
    latest = checkpoints[-1] if checkpoints else None
    rates = [r["env_steps_per_s"] for r in rows if r.get("env_steps_per_s", 0) > 0]
    ret = last.get("episode_return_mean")
    return TrainResult(
        run_dir=run_dir,
        status="interrupted",
        iterations=int(last.get("iteration", 0)),
        env_steps=int(last.get("env_steps", 0)),
        episode_return_mean=ret if ret is not None and math.isfinite(ret) else None,
        best_checkpoint=latest,
        last_checkpoint=latest,
        wall_time_s=wall_time_s,
        env_steps_per_s=sum(rates) / len(rates) if rates else 0.0,
        metric=experiment.checkpoint.metric,
        remote=remote,
    )


def _summarize(
    experiment: ExperimentConfig,
    run_dir: Path,
    results: Any,
    wall_time_s: float,
    remote: str | None = None,
) -> TrainResult:
    result = results[0]
    metrics = result.metrics or {}
    ckpt = experiment.checkpoint
    best_path, best_value = None, None
    try:
        best = result.get_best_checkpoint(ckpt.metric, ckpt.mode)
    except (RuntimeError, KeyError, ValueError):
        best = None
    if best is not None:
        best_path = _location(best, remote)
        for checkpoint, ckpt_metrics in result.best_checkpoints:
            if checkpoint.path == best.path:
                best_value = lookup_metric(ckpt_metrics, ckpt.metric)
    last_path = _location(result.checkpoint, remote) if result.checkpoint else None
    if best_path is None:
        best_path = last_path

    stopping = _stopping_anomaly(experiment, run_dir)
    if result.error is not None:
        status = "error"
    elif stop_reached(experiment, metrics):
        status = "finished"
    elif stopping is not None:
        status = "stopped_on_anomaly"
    else:  # Ctrl-C: Tune saved its state and the trial can be restored
        status = "interrupted"
    rows = _read_metrics(RunDir(run_dir).metrics)
    rates = [r["env_steps_per_s"] for r in rows if r["env_steps_per_s"] > 0]
    ret = lookup_metric(metrics, RETURN_KEY)
    error = None
    if result.error is not None:
        error = (
            f"the trial failed: {type(result.error).__name__}: {result.error}. "
            f"Details in {RunDir(run_dir).trial / 'error.txt'}."
        )
    elif status == "stopped_on_anomaly":
        error = f"stopped on an anomaly (monitoring.stop_on): {stopping.message}"
    return TrainResult(
        run_dir=run_dir,
        status=status,
        iterations=int(metrics.get("training_iteration", 0)),
        env_steps=int(metrics.get(ENV_STEPS_KEY, 0) or 0),
        episode_return_mean=ret,
        best_checkpoint=best_path,
        best_metric=best_value,
        last_checkpoint=last_path,
        wall_time_s=wall_time_s,
        env_steps_per_s=sum(rates) / len(rates) if rates else 0.0,
        metric=ckpt.metric,
        error=error,
        metrics=metrics,
        remote=remote,
    )


def _location(checkpoint: Any, remote: str | None) -> Path | str:
    """A checkpoint's local path, or its URI for a run on cloud storage."""
    if remote is None:
        return Path(checkpoint.path)
    from rl_platform.storage import checkpoint_uri

    return checkpoint_uri(checkpoint)


def _stopping_anomaly(experiment: ExperimentConfig, run_dir: Path) -> Any:
    """The first logged anomaly whose kind is in ``monitoring.stop_on``, or None."""
    from rl_platform.monitoring import read_anomalies

    stop_on = set(experiment.monitoring.stop_on)
    return next((a for a in read_anomalies(run_dir) if a.kind in stop_on), None)


def _read_metrics(path: Path) -> list[dict[str, float]]:
    """metrics.csv's numeric columns, one dict per complete row (a torn last line is skipped)."""
    import io

    import pandas as pd

    text = complete_lines(path) if path.is_file() else ""
    if not text.strip():
        return []
    return pd.read_csv(io.StringIO(text)).select_dtypes("number").to_dict("records")
