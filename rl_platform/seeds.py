"""Multi-seed runs: an experiment's seeds as one Tune run of concurrent trials, then aggregated.

``rlp train EXP --seeds 0-4`` makes one group directory ``<output>/<name>/<stamp>/``
holding ``seeds.json`` (the seeds), Tune's experiment state, one run directory
``seed_<k>/`` per seed (its ``config.yaml`` has ``seed: k``; ``rlp evaluate``,
``rlp monitor`` and ``rlp serve`` take it) and, once every seed finished,
``aggregate.json`` and ``aggregate.png``: each seed's greedy score (the policy's return
as ``rlp evaluate`` measures it), IQM and mean with 95% stratified bootstrap CIs
(:mod:`rl_platform.evaluation.statistics`) and the learning curves' IQM with its band.
What each field means: docs/experiments.md.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rl_platform import registry
from rl_platform.config import ConfigError, ExperimentConfig, load_experiment
from rl_platform.progress import RunStart
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
)
from rl_platform.runs import (
    SEED_DIR_PREFIX,
    SEEDS_FILE,
    TRIAL_DIR,
    RunDir,
    check_free,
    hold,
    holds_directories,
    new_run_dir,
    output_dir,
    read_json,
)
from rl_platform.stopping import stop_criteria
from rl_platform.tracking import check_tracking, trial_namer
from rl_platform.trust import check_own_state
from rl_platform.version import source_commit

log = logging.getLogger(__name__)

SCORE = "greedy_return"  # what a seed's score is (aggregate.json's "score")
EPISODES = 100  # greedy episodes per seed (rlp evaluate's default)
CURVE_POINTS = 50  # points of the common env-step grid of the learning curves
MAX_SEEDS = 1_000
RETURN_COLUMN = "episode_return_mean"  # metrics.csv's return, where it has no task score
_SEED_PART = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", re.ASCII)


# --------------------------------------------------------------------------- seeds


def parse_seeds(spec: str) -> list[int]:
    """The seeds of a spec like ``0-4``, ``0,2,5``, ``3`` or ``0-2,7`` (in that order).

    Raises:
        ConfigError: a part is not a seed or a range, a range runs backwards, a seed
            repeats, or there are more than :data:`MAX_SEEDS`.
    """
    text = str(spec).strip()
    if not text:
        raise ConfigError("--seeds is empty; give seeds like 0-4, 0,2,5 or 3.")
    seeds: list[int] = []
    for part in text.split(","):
        match = _SEED_PART.fullmatch(part)
        if match is None:
            raise ConfigError(
                f"--seeds {text!r}: {part.strip()!r} is neither a seed (a whole number >= 0) "
                "nor a range like 0-4; give seeds like 0-4, 0,2,5 or 0-2,7."
            )
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        if last < first:
            raise ConfigError(f"--seeds {text!r}: the range {part.strip()!r} runs backwards.")
        if last - first + len(seeds) >= MAX_SEEDS:
            raise ConfigError(f"--seeds {text!r}: more than {MAX_SEEDS} seeds.")
        for seed in range(first, last + 1):
            if seed in seeds:
                raise ConfigError(f"--seeds {text!r}: seed {seed} is given twice.")
            seeds.append(seed)
    return seeds


def _check_seeds(seeds: str | Sequence[int]) -> list[int]:
    if isinstance(seeds, str):
        return parse_seeds(seeds)
    values = list(seeds)
    if not values:
        raise ConfigError("seeds is empty: give one seed at least.")
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in values):
        raise ConfigError(f"seeds {values!r}: each seed is a whole number >= 0.")
    if len(set(values)) != len(values):
        raise ConfigError(f"seeds {values!r}: a seed is given twice.")
    return values


# --------------------------------------------------------------------------- curves


def read_curve(run_dir: Path) -> tuple[list[float], list[float]]:
    """A run's training return per agent against env steps, from its ``metrics.csv``.

    The return is the task score (``reward_env``: the env's own reward per agent, the
    scale of the greedy scores), else ``episode_return_mean``; rows without a finite
    value are left out.
    """
    path = RunDir(run_dir).metrics
    steps: list[float] = []
    returns: list[float] = []
    if not path.is_file():
        return steps, returns
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        column = "reward_env" if "reward_env" in (reader.fieldnames or []) else RETURN_COLUMN
        for row in reader:
            try:
                x, y = float(row["env_steps"]), float(row[column])
            except (KeyError, TypeError, ValueError):
                continue  # a row cut short
            if math.isfinite(x) and math.isfinite(y):
                steps.append(x)
                returns.append(y)
    return steps, returns


def align_curves(
    curves: Sequence[tuple[Sequence[float], Sequence[float]]], points: int = CURVE_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Curves ``(env_steps, values)`` interpolated on one env-step grid: ``(grid, (runs, points))``.

    The grid spans the env steps every run reached (the latest first point to the earliest
    last point), with at most `points` points and no more than the shortest curve has;
    non-finite values are dropped first. Empty when a run has no finite point.
    """
    cleaned = []
    for steps, values in curves:
        x = np.asarray(steps, dtype=np.float64)
        y = np.asarray(values, dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        order = np.argsort(x[keep], kind="stable")
        cleaned.append((x[keep][order], y[keep][order]))
    if not cleaned or any(len(x) == 0 for x, _ in cleaned):
        return np.zeros(0), np.zeros((len(cleaned), 0))
    start = max(float(x[0]) for x, _ in cleaned)
    end = min(float(x[-1]) for x, _ in cleaned)
    if end <= start:
        grid = np.array([end])
    else:
        grid = np.linspace(start, end, max(2, min(points, min(len(x) for x, _ in cleaned))))
    return grid, np.stack([np.interp(grid, x, y) for x, y in cleaned])


# --------------------------------------------------------------------------- aggregate


def aggregate_record(
    *,
    name: str,
    algorithm: str,
    env: str,
    episodes: int,
    scores: Mapping[int, float],
    runs: Mapping[int, str],
    random: float,
    baselines: Mapping[str, float],
    grid: np.ndarray,
    curves: np.ndarray,
    reps: int | None = None,
) -> dict[str, Any]:
    """``aggregate.json``'s content: scores per seed, IQM and mean with CIs, the curve band."""
    from rl_platform.evaluation.statistics import REPS, aggregates, curve_band

    seeds = list(scores)
    estimates = aggregates([scores[s] for s in seeds], reps=reps or REPS)
    curve: dict[str, list[float]] = {"env_steps": [], "iqm": [], "low": [], "high": []}
    if curves.size:
        band = curve_band(curves, **({"reps": reps} if reps else {}))
        curve = {"env_steps": [float(v) for v in grid], **band}
    return {
        "kind": "seeds",
        "name": name,
        "algorithm": algorithm,
        "env": env,
        "score": SCORE,
        "episodes": episodes,
        "seeds": seeds,
        "scores": [float(scores[s]) for s in seeds],
        "runs": {str(s): runs[s] for s in seeds},
        "random": float(random),
        "baselines": {k: float(v) for k, v in baselines.items()},
        "iqm": estimates["iqm"].to_json(),
        "mean": estimates["mean"].to_json(),
        "curve": curve,
        "commit": source_commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }


def write_aggregate(group_dir: Path, record: dict[str, Any], curves: np.ndarray) -> None:
    """Write ``aggregate.json`` and ``aggregate.png`` (each seed's curve, the IQM, its band)."""
    files = RunDir(group_dir)
    plot_aggregate(record, curves, files.aggregate_plot)
    files.aggregate.write_text(json.dumps(record, indent=2) + "\n")


def plot_aggregate(record: dict[str, Any], curves: np.ndarray, path: Path) -> None:
    """The learning curves of the seeds, their IQM with its 95% band, random and baselines."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    curve = record["curve"]
    x = curve["env_steps"]
    if x:
        for i, row in enumerate(curves):
            ax.plot(x, row, color="0.6", lw=0.8, alpha=0.6, label="seeds" if i == 0 else None)
        ax.fill_between(x, curve["low"], curve["high"], color="C0", alpha=0.25, label="95% CI")
        ax.plot(x, curve["iqm"], color="C0", lw=2, label=f"IQM of {len(record['seeds'])} seeds")
    ax.axhline(record["random"], color="C3", ls="--", lw=1, label="random (greedy score)")
    for i, (name, value) in enumerate(record["baselines"].items()):
        ax.axhline(value, color=f"C{(i + 4) % 10}", ls=":", lw=1, label=f"{name} (greedy score)")
    iqm = record["iqm"]
    ax.set_title(
        f"{record['name']}: {record['algorithm']} on {record['env']}; greedy score IQM "
        f"{iqm['point']:.3g} [{iqm['low']:.3g}, {iqm['high']:.3g}]",
        fontsize=9,
    )
    ax.set_xlabel("env steps")
    ax.set_ylabel("training return per agent (task score)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.savefig(path, dpi=110)


def greedy_scores(
    checkpoints: Mapping[int, Path | str], episodes: int = EPISODES, eval_seed: int = 0
) -> tuple[dict[int, float], float, dict[str, float]]:
    """Each seed's greedy score, and random play's and the baselines' on the same episodes.

    A score is the mean per-agent episode return over `episodes` greedy episodes at the
    env's level, played as ``rlp evaluate`` plays its clean episodes (same seeds, same
    jobs), in this process. Envs without a batched core are played on their RLlib view.
    """
    from rl_platform.checkpoints import read_manifest
    from rl_platform.evaluation.baselines import RANDOM, episode_scores
    from rl_platform.evaluation.policy import policy_scores
    from rl_platform.evaluation.rollout import POLICY
    from rl_platform.evaluation.suite import JobContext, paired_job, run_job
    from rl_platform.evaluation.target import EvaluationError, resolve_target

    scores: dict[int, float] = {}
    others: tuple[float, dict[str, float]] | None = None
    for seed, checkpoint in checkpoints.items():
        try:
            target = resolve_target(checkpoint)
        except EvaluationError:  # no batched core: the view, as policy_scores plays it
            scores[seed] = float(policy_scores(checkpoint, None, episodes, eval_seed).mean())
            if others is None:
                env = read_manifest(checkpoint)["env"]
                random = episode_scores(env["id"], RANDOM, env["config"], episodes, eval_seed)
                others = (float(random.mean()), {})
            continue
        context = JobContext(target.env_id, target.env_config, str(target.checkpoint))

        def mean(policy: str, target: Any = target, context: Any = context) -> float:
            job = paired_job(policy, "clean", target.level, episodes, eval_seed)
            return float(run_job(context, job).returns.mean())

        scores[seed] = mean(POLICY)
        if others is None:
            others = (mean(RANDOM), {name: mean(name) for name in target.baselines})
    assert others is not None
    return scores, others[0], others[1]


def aggregate_group(
    group_dir: Path,
    experiment: ExperimentConfig,
    checkpoints: Mapping[int, Path | str],
    episodes: int = EPISODES,
) -> dict[str, Any]:
    """Score every seed's final checkpoint, aggregate, write aggregate.json and .png."""
    scores, random, baselines = greedy_scores(checkpoints, episodes)
    group = RunDir(group_dir)
    dirs = {seed: group.seed_dir(seed) for seed in checkpoints}
    grid, curves = align_curves([read_curve(dirs[s]) for s in checkpoints])
    record = aggregate_record(
        name=experiment.name,
        algorithm=experiment.algorithm.id,
        env=experiment.env.id,
        episodes=episodes,
        scores=scores,
        runs={s: d.name for s, d in dirs.items()},
        random=random,
        baselines=baselines,
        grid=grid,
        curves=curves,
    )
    write_aggregate(group_dir, record, curves)
    return record


# --------------------------------------------------------------------------- train


@dataclass
class SeedsResult:
    """The outcome of :func:`train_seeds`: the group directory, each seed's run, the aggregate."""

    group_dir: Path
    status: str  # "finished", "interrupted" or "error"
    seeds: list[int]
    runs: dict[int, Any] = field(default_factory=dict)  # seed -> training.TrainResult
    aggregate: dict[str, Any] | None = None  # aggregate.json's content once finished
    wall_time_s: float = 0.0
    error: str | None = None


def seed_trial_dirname(trial: Any) -> str:
    """A seed trial's folder: ``seed_<k>/trial``, so each seed is a normal run directory.

    Tune refuses a ``/`` in the name a dirname creator returns; the trial's relative
    path (a private ``Trial`` attribute, read back from Tune's state on a resume) is set
    here instead, before Tune derives the trial's folder from it.
    """
    name = f"{SEED_DIR_PREFIX}{trial.config['seed']}"
    trial.relative_logdir = f"{name}/{TRIAL_DIR}"
    trial.storage.trial_dir_name = trial.relative_logdir
    return name


def _seed_name(trial: Any) -> str:
    """A seed trial's name under its group (``seed_<k>``; no side effects, unlike the dirname)."""
    return f"{SEED_DIR_PREFIX}{trial.config['seed']}"


def _seed_trainable(experiment: ExperimentConfig, algo_config: Any) -> Any:
    """The Tune trainable of one seed (a sweep trial built from the seed's experiment)."""
    from ray import tune
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    from rl_platform.training import build_algorithm_config
    from rl_platform.tuning.trial import SweepTrial

    class SeedTrial(SweepTrial):
        """One seed: the experiment with ``seed`` set, built like ``rlp train``."""

        def setup(  # noqa: D102
            self, config: dict[str, Any], base: dict[str, Any], env_entry: Any
        ) -> None:
            if env_entry is not None and env_entry.id not in registry.ENVS:
                registry.register_env(env_entry)
            self.experiment = load_experiment({**base, "seed": int(config["seed"])})
            self.metric = self.experiment.checkpoint.metric
            self.algo = build_algorithm_config(self.experiment).build_algo()

    resources = algo_config.algo_class.default_resource_request(algo_config)
    if len(resources.bundles) == 1:  # one bundle: SPREAD puts the trials on different nodes
        resources = PlacementGroupFactory(resources.bundles, strategy="SPREAD")
    base = experiment.model_dump(mode="json")
    return tune.with_resources(
        tune.with_parameters(SeedTrial, base=base, env_entry=registry.ENVS.get(experiment.env.id)),
        resources,
    )


def _seed_callbacks(callbacks: dict[int, Any]) -> Any:
    """One Tune callback handing each trial's events to its seed's run callback."""
    from ray.tune import Callback

    class SeedCallbacks(Callback):
        """Routes results and checkpoints to the seed's ``training`` run callback."""

        def __init__(self, callbacks: dict[int, Any]) -> None:
            self.callbacks = callbacks

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: D102
            own = self.callbacks[int(trial.config["seed"])]
            own.on_trial_result(iteration, trials, trial, result, **info)

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):  # noqa: D102
            own = self.callbacks[int(trial.config["seed"])]
            own.on_checkpoint(iteration, trials, trial, checkpoint, **info)

    return SeedCallbacks(callbacks)


@holds_directories
def train_seeds(
    source: str | Path | dict[str, Any] | ExperimentConfig | None = None,
    seeds: str | Sequence[int] | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    *,
    output: str | Path | None = None,
    address: str | None = None,
    resume: str | Path | None = None,
    progress: Callable[[Any], None] | None = None,
    verbose: bool = False,
    trust: bool = False,
    notice: Callable[[str], None] | None = None,
    episodes: int = EPISODES,
    on_start: Callable[[Any], None] | None = None,
    callbacks: Sequence[Any] = (),
) -> SeedsResult:
    """Train an experiment once per seed, as concurrent trials of one Tune run; aggregate.

    Args:
        source: experiment YAML path, dict or config (ignored when resuming).
        seeds: a spec (``"0-4"``, ``"0,2,5"``) or a list of seeds.
        overrides: ``key.path=value`` overrides, validated like the file.
        output: parent of the group directories (``<output>/<name>/<stamp>``); default
            the experiment's ``storage``, else ``runs``. A filesystem path.
        address: a Ray cluster address; a private local Ray is started when None.
        resume: a group directory to continue (its unfinished seeds from their last
            checkpoints), then aggregate.
        progress: called with each iteration's ``progress.IterationRow`` (its ``seed`` set).
        verbose: let Ray's and the workers' logs through.
        trust: resume even from a directory others can write (``--trust``).
        notice: called once with the sampler line.
        episodes: greedy episodes per seed for its score.
        on_start: called once with the ``progress.RunStart`` (the group directory exists,
            Ray has not started yet).
        callbacks: more Tune callbacks, after the platform's own and the ``tracking``
            section's; a resume runs those the group started with.

    Raises:
        ConfigError: the experiment or the seeds are invalid; nothing was started.
        ResumeError: `resume` is not a resumable group directory.
        UntrustedStateError: `resume` is not this user's own (see `trust`).
        TrainingError: a seed's trial failed beyond its retries (the others' runs are
            summarised; a resume retries it).
    """
    from ray import tune

    from rl_platform import training
    from rl_platform.monitoring import RunMonitor
    from rl_platform.rewards import reward_parts
    from rl_platform.storage import is_uri
    from rl_platform.tuning.sweep import EXPERIMENT_STATE_PERIOD_S, STATE_PERIOD_VARIABLE

    quiet_logs(verbose)
    trials = []
    if resume is not None:
        group_dir = Path(resume)
        experiment, seed_list, episodes = _check_resumable(group_dir)
        check_own_state(group_dir, trust=trust)  # before anything of it is unpickled
        check_free(group_dir)
        trials = check_tune_state(group_dir, RUN_SEARCH_STATE, resume_errored=True)
        hold(group_dir)
    else:
        if seeds is None:
            raise ConfigError("give the seeds to train (e.g. '0-4').")
        seed_list = _check_seeds(seeds)
        if episodes < 1:
            raise ConfigError(f"episodes = {episodes}: score each seed on 1 episode at least.")
        experiment = load_experiment(source, overrides)
        target = output if output is not None else experiment.storage
        if is_uri(target):
            raise ConfigError(
                f"output {target!r}: a multi-seed run writes to a filesystem path (shared by "
                "the nodes on a cluster); single runs can write to cloud storage."
            )
    check_tracking(experiment)
    experiments = {s: experiment.model_copy(update={"seed": s}) for s in seed_list}
    algo_config = training.build_algorithm_config(experiments[seed_list[0]])
    training.tell_sampler(experiment, notice)

    if resume is None:
        group_dir = new_run_dir(output_dir(output, experiment), experiment.name)
        hold(group_dir)
        for seed, seed_experiment in experiments.items():
            seed_dir = RunDir(group_dir).seed_dir(seed)
            seed_dir.mkdir()
            RunDir(seed_dir).config.write_text(seed_experiment.to_yaml())
        state = {"seeds": seed_list, "episodes": episodes}
        RunDir(group_dir).seeds.write_text(json.dumps(state, indent=2) + "\n")
    if on_start is not None:
        stop = stop_criteria(experiment)
        on_start(RunStart(group_dir, stop, None, resume is not None, tuple(seed_list)))
    # refused before anything ran: no group directory is left behind
    start_checked(
        experiment, algo_config, address, verbose, discard=group_dir if resume is None else None
    )
    group = RunDir(group_dir)

    parts = reward_parts(experiment)
    by_seed_callbacks = {}
    for seed in seed_list:
        seed_dir = group.seed_dir(seed).resolve()
        monitor = (
            RunMonitor(experiment.monitoring, seed_dir) if experiment.monitoring.enabled else None
        )
        by_seed_callbacks[seed] = training._make_progress_callback(
            seed_dir, parts, monitor, None, seed
        )
    trainable = _seed_trainable(experiment, algo_config)
    param_space = {"seed": tune.grid_search(seed_list)}

    training.set_progress_sink(progress)
    state_period = os.environ.get(STATE_PERIOD_VARIABLE)
    os.environ.setdefault(STATE_PERIOD_VARIABLE, EXPERIMENT_STATE_PERIOD_S)
    started = time.monotonic()
    results = None
    try:
        if resume is not None:
            again = resumed(trials)
            trim_tables(None, again)  # the rows after each checkpoint are written again
            for trial in again:
                trim_run_tables(trial.path.parent, trial.iteration)
            tuner = tune.Tuner.restore(
                str(group_dir.resolve()),
                trainable=trainable,
                param_space=param_space,
                resume_unfinished=True,
                resume_errored=True,
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(
                    trial_dirname_creator=seed_trial_dirname,
                    trial_name_creator=trial_namer(
                        f"{experiment.name}/{group_dir.name}", _seed_name
                    ),
                    reuse_actors=False,
                ),
                run_config=training.tune_run_config(
                    experiment,
                    group_dir,
                    [_seed_callbacks(by_seed_callbacks)],
                    group=f"{experiment.name}/{group_dir.name}",
                    extra=callbacks,
                ),
            )
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM: Tune did not stop gracefully
        log.info("interrupted; Tune's last saved state is what a resume continues from")
    finally:
        training.set_progress_sink(None)
        if state_period is None:
            os.environ.pop(STATE_PERIOD_VARIABLE, None)
    with signals_ignored():  # the summaries are written whole, whatever comes now
        elapsed = time.monotonic() - started
        by_seed = {int(r.config["seed"]): r for r in results} if results is not None else {}
        runs = {}
        for seed in seed_list:
            seed_dir = group.seed_dir(seed)
            if seed in by_seed:
                run = training._summarize(experiments[seed], seed_dir, [by_seed[seed]], elapsed)
            else:
                run = training._interrupted_summary(experiments[seed], seed_dir, elapsed, None)
            previous = RunDir(seed_dir).read_summary()
            if previous and previous.get("wall_time_s"):
                run.wall_time_s += float(previous["wall_time_s"])
            RunDir(seed_dir).write_summary(run.to_json())
            runs[seed] = run
    statuses = {run.status for run in runs.values()}
    result = SeedsResult(group_dir, "interrupted", seed_list, runs, wall_time_s=elapsed)
    if "error" in statuses:
        failed = [s for s, r in runs.items() if r.status == "error"]
        result.status = "error"
        result.error = (
            f"seed(s) {', '.join(map(str, failed))} failed: {runs[failed[0]].error} "
            f"Resume with rlp train --resume {group_dir}."
        )
        raise training.TrainingError(result.error)
    if statuses <= {"finished", "stopped_on_anomaly"}:
        checkpoints = {s: runs[s].last_checkpoint or runs[s].best_checkpoint for s in seed_list}
        result.aggregate = aggregate_group(group_dir, experiment, checkpoints, episodes)
        result.status = "finished"
    return result


def _check_resumable(group_dir: Path) -> tuple[ExperimentConfig, list[int], int]:
    """The group's experiment, seeds and episodes; ResumeError when it cannot be resumed."""
    group = RunDir(group_dir)
    if not group_dir.is_dir():
        raise ResumeError(f"{group_dir}: no such multi-seed group directory.")
    state = read_json(group.seeds)
    if not isinstance(state, dict) or not isinstance(state.get("seeds"), list):
        raise ResumeError(f"{group_dir}: not a multi-seed group directory (no valid {SEEDS_FILE}).")
    if not group.has_tune_state():
        raise ResumeError(
            f"{group_dir}: holds no Tune experiment state to resume from (the run was "
            "stopped before it started); start it again instead."
        )
    if group.aggregate.is_file():
        raise ResumeError(
            f"{group_dir}: the multi-seed run already finished ({group.aggregate.name} is "
            "written); nothing to resume."
        )
    seeds = [int(s) for s in state["seeds"]]
    first = group.seed_dir(seeds[0])
    try:
        experiment = load_experiment(RunDir(first).config)
    except (ConfigError, FileNotFoundError) as err:
        raise ResumeError(f"{first}: its config no longer loads: {err}") from None
    return experiment, seeds, int(state.get("episodes", EPISODES))
