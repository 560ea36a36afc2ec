"""``tune()``: run a sweep (or resume a stopped one) on Ray Tune and summarise it.

A sweep directory ``<output>/<name>/sweep-<stamp>/`` holds ``sweep.yaml`` (the resolved
sweep), Tune's experiment state and one ``trial_<id>/`` per trial, the Optuna study
(``optuna.journal`` unless ``tune.storage`` names another) and ``study.json`` (where it
is), ``.rlp.lock`` while a process runs it, and at the end ``trials.csv``, ``best.yaml``,
``plots/`` and ``summary.json``.

Planning is :mod:`~rl_platform.tuning.plan`, the searcher
:mod:`~rl_platform.tuning.search`, the study's storage
:mod:`~rl_platform.tuning.storage`, the trials table and ``best.yaml``
:mod:`~rl_platform.tuning.results`, the plots :mod:`~rl_platform.tuning.plots`.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ray import tune as ray_tune

from rl_platform import registry
from rl_platform.config import ConfigError, ExperimentConfig, TuneSpec, load_experiment
from rl_platform.progress import SweepStart, SweepStreamProgress
from rl_platform.ray_session import (
    quiet_logs,
    signals_ignored,
    start_checked,
)
from rl_platform.resume import (
    SWEEP_SEARCH_STATE,
    ResumeError,
    check_tune_state,
    resumed,
    trim_tables,
)
from rl_platform.runs import (
    SWEEP_FILE,
    RunDir,
    check_free,
    hold,
    holds_directories,
    new_run_dir,
    output_dir,
)
from rl_platform.stopping import stop_criteria
from rl_platform.storage import is_uri
from rl_platform.tracking import check_tracking, trial_namer
from rl_platform.training import build_algorithm_config, tell_sampler, tune_run_config
from rl_platform.trust import check_own_state
from rl_platform.tuning.plan import SweepPlan, plan_sweep
from rl_platform.tuning.plots import write_plots
from rl_platform.tuning.ray_private import fitted_trials
from rl_platform.tuning.results import (
    SweepResult,
    best_trial,
    trial_row,
    write_best_yaml,
    write_trials_csv,
)
from rl_platform.tuning.search import StudySearch
from rl_platform.tuning.storage import StudyStorage, StudyStorageError, record, recorded
from rl_platform.tuning.trial import (
    SweepProgress,
    SweepTrial,
    TrialEvent,
    set_progress_sink,
    trial_dirname,
)

log = logging.getLogger(__name__)

# Tune saves its experiment state (trial statuses and the searcher) at most this often;
# its default ("auto", at least 10 s) would let a killed driver lose up to 10 s of
# finished trials, which a resume then runs again.
EXPERIMENT_STATE_PERIOD_S = "1"
STATE_PERIOD_VARIABLE = "TUNE_GLOBAL_CHECKPOINT_S"


@holds_directories
def tune(
    source: str | Path | dict[str, Any] | ExperimentConfig | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    *,
    num_samples: int | None = None,
    output: str | Path | None = None,
    address: str | None = None,
    resume: str | Path | None = None,
    progress: Callable[[TrialEvent], None] | bool | None = True,
    verbose: bool = False,
    trust: bool = False,
    notice: Callable[[str], None] | None = None,
    callbacks: Sequence[Any] = (),
    on_start: Callable[[SweepStart], None] | None = None,
) -> SweepResult:
    """Run a hyperparameter sweep (or resume a stopped one) and summarise it.

    Resuming unpickles the sweep's Tune state and its trials' checkpoints, which can run
    code of whoever wrote them: only directories this user alone can write are resumed,
    unless `trust`.

    Args:
        source: sweep YAML path, dict or config (an experiment plus ``tune:``; without a
            tune section the defaults apply). Ignored when resuming.
        overrides: ``key.path=value`` overrides (``tune.num_samples=20`` too).
        num_samples: trials in all (overrides ``tune.num_samples``).
        output: parent of the sweep directories (``<output>/<name>/sweep-<stamp>``).
        address: a Ray cluster address; a private local Ray is started when None.
        resume: a sweep directory to continue.
        progress: True (default): the sweep directory, then one line per trial event on
            stderr (:class:`~rl_platform.progress.SweepStreamProgress`); False or None:
            silent; a callable: called with each trial event (in the calling process).
        verbose: let Ray's and the workers' logs through.
        trust: resume even from a directory others can write (``--trust``).
        notice: called once with the sampler line (see :func:`rl_platform.training.train`).
        callbacks: more Tune callbacks, after the platform's own and the ``tracking``
            section's; a resume runs those the sweep started with.
        on_start: called once with the :class:`~rl_platform.progress.SweepStart` (the
            sweep directory exists, Ray is not started yet).

    Raises:
        ConfigError: the sweep is invalid; nothing was started or written.
        ResumeError: `resume` is not a resumable sweep directory.
        UntrustedStateError: `resume` is not this user's own (see `trust`).
    """
    quiet_logs(verbose)
    _quiet_optuna(verbose)
    if progress is True:
        printer = SweepStreamProgress()
        progress, on_start = printer, on_start or printer.start
    elif progress is False:
        progress = None
    if resume is not None:
        sweep_dir = Path(resume)
        experiment = _check_resumable(sweep_dir)
        check_own_state(sweep_dir, trust=trust)  # before anything of it is unpickled
        check_free(sweep_dir)  # another process resuming it may be writing its state
        trials = check_tune_state(sweep_dir, SWEEP_SEARCH_STATE, resume_errored=False)
        hold(sweep_dir)  # until tune returns: a second resume of it is refused
        where = str(RunDir(sweep_dir).sweep)
    elif source is None:
        raise ConfigError("give a sweep (a YAML path, dict or config), or resume=SWEEP_DIR.")
    else:
        where = str(source) if isinstance(source, (str, Path)) else "<sweep>"
        experiment = load_experiment(source, overrides)
        spec = experiment.tune or TuneSpec()
        if num_samples is not None:
            if num_samples < 1:
                raise ConfigError(f"--num-samples = {num_samples}: expected at least 1 trial.")
            spec = spec.model_copy(update={"num_samples": num_samples})
        experiment = experiment.model_copy(update={"tune": spec})
    target = output if output is not None else experiment.storage
    if resume is None and is_uri(target):
        raise ConfigError(
            f"{where}: a sweep's output {target!r} must be a filesystem path (shared by the "
            "nodes on a cluster): the sweep directory holds the Optuna study's journal file. "
            "Single runs (rlp train) can write to cloud storage."
        )
    plan = plan_sweep(experiment, where)
    spec = plan.spec
    trial_experiment = load_experiment(plan.trial_base)
    check_tracking(trial_experiment)
    algo_config = build_algorithm_config(trial_experiment)
    tell_sampler(trial_experiment, notice)
    storage = None
    if resume is None and spec.storage:
        storage = _check_storage(spec, where)  # opened (an RDB's schema made) before Ray
    elif resume is not None:
        storage = _resumed_storage(sweep_dir)

    if resume is None:
        sweep_dir = _new_sweep_dir(output_dir(output, experiment), experiment.name)
        hold(sweep_dir)
        if spec.study_name is None:
            spec = spec.model_copy(update={"study_name": f"{experiment.name}-{sweep_dir.name}"})
            plan.spec = spec
            plan.experiment = plan.experiment.model_copy(update={"tune": spec})
        RunDir(sweep_dir).sweep.write_text(plan.resolved_yaml())
    if on_start is not None:
        stop = stop_criteria(trial_experiment)
        on_start(SweepStart(sweep_dir, spec.num_samples, stop, resume is not None))

    # refused before anything ran: no sweep directory is left behind
    start_checked(
        trial_experiment,
        algo_config,
        address,
        verbose,
        discard=sweep_dir if resume is None else None,
    )
    resources = algo_config.algo_class.default_resource_request(algo_config)
    if resume is None:
        if storage is None:
            storage = StudyStorage.journal_in(sweep_dir)
        storage.open()
        record(sweep_dir, storage, spec.study_name)
    concurrency = spec.max_concurrent_trials or _trials_that_fit(resources.required_resources)
    concurrency = min(concurrency, spec.num_samples)

    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(
            SweepTrial, plan=plan, env_entry=registry.ENVS.get(experiment.env.id)
        ),
        resources,
    )
    set_progress_sink(progress)
    state_period = os.environ.get(STATE_PERIOD_VARIABLE)
    os.environ.setdefault(STATE_PERIOD_VARIABLE, EXPERIMENT_STATE_PERIOD_S)
    started = time.monotonic()
    results = None
    try:
        if resume is not None:
            # the rows after the checkpoints the trials restore from are written again
            trim_tables(None, resumed(trials, resume_errored=False))
            tuner = ray_tune.Tuner.restore(
                str(sweep_dir.resolve()),
                trainable=trainable,
                param_space=plan.param_space,
                resume_unfinished=True,
                # a trial that failed beyond its retries is final (FAIL in the study)
                resume_errored=False,
                restart_errored=False,
            )
        else:
            tuner = ray_tune.Tuner(
                trainable,
                param_space=plan.param_space,
                tune_config=_tune_config(plan, storage, concurrency, sweep_dir),
                run_config=_run_config(plan, sweep_dir, callbacks),
            )
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM: Tune did not stop gracefully
        log.info("interrupted; Tune's last saved state is what a resume continues from")
    finally:
        set_progress_sink(None)
        if state_period is None:
            os.environ.pop(STATE_PERIOD_VARIABLE, None)
    with signals_ignored():  # the summary is written whole, whatever comes now
        elapsed = time.monotonic() - started
        result = summarize(plan, sweep_dir, results, storage, elapsed)
        previous = RunDir(sweep_dir).read_summary()
        if previous and previous.get("wall_time_s"):
            result.wall_time_s += float(previous["wall_time_s"])
        RunDir(sweep_dir).write_summary(result.to_json())
    return result


def _check_storage(spec: TuneSpec, where: str) -> StudyStorage:
    """Open a user-given Optuna storage before anything is written; refuse a used name."""
    storage = StudyStorage.from_setting(spec.storage)
    try:
        names = {s.study_name for s in storage.open().get_all_studies()}
    except StudyStorageError as err:
        raise ConfigError(f"{where}: tune.storage = {spec.storage!r}: {err}") from None
    if spec.study_name is not None and spec.study_name in names:
        raise ConfigError(
            f"{where}: tune.study_name = {spec.study_name!r} already exists in "
            f"{storage.display}; a new sweep needs a new study (another study_name, or null "
            "for a fresh one). `rlp tune --resume SWEEP_DIR` continues a sweep."
        )
    return storage


def _tune_config(plan: SweepPlan, storage: StudyStorage, concurrency: int, sweep_dir: Path):
    import optuna
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    spec = plan.spec
    seed = plan.experiment.seed
    if spec.searcher == "optuna":
        # constant_liar: running trials count as bad guesses, so parallel trials spread out
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=spec.startup_trials, constant_liar=concurrency > 1
        )
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    searcher = StudySearch(
        sampler=sampler,
        storage=storage.open(),
        study_name=spec.study_name,
        stop=stop_criteria(plan.experiment),
    )
    if spec.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=plan.max_t,
            grace_period=spec.grace_period,
            reduction_factor=spec.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    return ray_tune.TuneConfig(
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency),
        scheduler=scheduler,
        num_samples=spec.num_samples,
        metric=spec.metric,
        mode=spec.mode,
        trial_dirname_creator=trial_dirname,
        trial_name_creator=trial_namer(f"{plan.experiment.name}/{sweep_dir.name}", trial_dirname),
        reuse_actors=False,
    )


def _run_config(plan: SweepPlan, sweep_dir: Path, extra: Sequence[Any] = ()):
    experiment = load_experiment(plan.trial_base)
    progress = SweepProgress(plan.spec.metric, stop_criteria(experiment))
    group = f"{experiment.name}/{sweep_dir.name}"
    return tune_run_config(experiment, sweep_dir, [progress], group=group, extra=extra)


def _trials_that_fit(per_trial: dict[str, float]) -> int:
    """How many trials the cluster's resources hold at once (at least one)."""
    import ray

    have = ray.cluster_resources()
    counts = [int(have.get(k, 0.0) // v + 1e-9) for k, v in per_trial.items() if v > 0]
    return max(1, min(counts, default=1))


def _new_sweep_dir(output: Path, name: str) -> Path:
    return new_run_dir(output, name, prefix="sweep-")


def _check_resumable(sweep_dir: Path) -> ExperimentConfig:
    """The sweep's experiment; ResumeError if it is no sweep directory or finished (no pickles)."""
    if not sweep_dir.is_dir():
        raise ResumeError(f"{sweep_dir}: no such sweep directory.")
    sweep = RunDir(sweep_dir)
    if not sweep.sweep.is_file():
        raise ResumeError(f"{sweep_dir}: not a sweep directory (no {SWEEP_FILE}).")
    if not sweep.has_tune_state():
        raise ResumeError(
            f"{sweep_dir}: holds no Tune experiment state to resume from (the sweep was "
            "stopped before its first trial started); start it again instead."
        )
    summary = sweep.read_summary()
    if summary and summary.get("status") == "finished":
        raise ResumeError(
            f"{sweep_dir}: the sweep already finished ({len(summary.get('trials', []))} "
            "trials); nothing to resume. Start a new sweep for more trials."
        )
    try:
        experiment = load_experiment(sweep.sweep)
    except ConfigError as err:
        raise ResumeError(f"{sweep_dir}: its {SWEEP_FILE} no longer validates: {err}") from None
    return experiment


def _resumed_storage(sweep_dir: Path) -> StudyStorage:
    """The storage the sweep was created with, opened (its searcher state opens it too)."""
    try:
        storage, _ = recorded(sweep_dir)
        storage.open()
    except StudyStorageError as err:
        raise ResumeError(f"{sweep_dir}: its Optuna study: {err}") from None
    return storage


def _quiet_optuna(verbose: bool) -> None:
    import optuna

    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# --------------------------------------------------------------------------- summary


def summarize(
    plan: SweepPlan, sweep_dir: Path, results: Any, storage: StudyStorage, wall_time_s: float
) -> SweepResult:
    """Write trials.csv, best.yaml, the plots; return the sweep's result.

    ``results`` is what ``Tuner.fit`` returned, or None when it was interrupted before it
    could return: the trials are then read from Tune's last saved state.
    """
    import optuna

    spec = plan.spec
    study = optuna.load_study(study_name=spec.study_name, storage=storage.open())
    by_tune_id = {
        t.user_attrs["tune_trial_id"]: t
        for t in study.get_trials(deepcopy=False)
        if "tune_trial_id" in t.user_attrs
    }
    trials = _saved_trials(sweep_dir) if results is None else fitted_trials(results)
    rows = [trial_row(plan, trial, by_tune_id.get(trial.trial_id)) for trial in trials]
    rows.sort(key=lambda r: r.trial_id)
    done = sum(r.status in ("complete", "stopped early", "error") for r in rows)
    status = "finished" if done >= spec.num_samples and results is not None else "interrupted"
    result = SweepResult(
        sweep_dir=sweep_dir,
        status=status,
        num_samples=spec.num_samples,
        metric=spec.metric,
        mode=spec.mode,
        searcher=spec.searcher,
        scheduler=spec.scheduler,
        study_name=spec.study_name or "",
        storage=storage.display,
        trials=rows,
        skipped_params=plan.skipped,
        env_steps=sum(r.env_steps for r in rows),
        wall_time_s=wall_time_s,
    )
    files = RunDir(sweep_dir)
    write_trials_csv(files.trials_table, rows, plan.params)
    result.best = best_trial(rows, spec.mode)
    if result.best is not None:
        result.best_yaml = files.best
        write_best_yaml(plan, result.best, result.best_yaml, sweep_dir)
    result.plots = write_plots(study, rows, plan, files.plots)
    return result


def _saved_trials(sweep_dir: Path) -> list[Any]:
    """The trials of Tune's last saved experiment state (none if it cannot be read)."""
    try:
        return ray_tune.ExperimentAnalysis(str(sweep_dir.resolve())).trials
    except Exception as err:  # noqa: BLE001 (a summary must be written in any case)
        log.warning("could not read the trials of %s: %s", sweep_dir, err)
        return []
