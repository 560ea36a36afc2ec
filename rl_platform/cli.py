"""The ``rlp`` command line: parses arguments, calls the library, renders progress.

Exit codes: 0 success; 1 a run, job or cluster call failed; 2 bad input
(an invalid experiment, override or run directory, a run directory whose Tune state is
damaged), reported in one paragraph with no traceback; 130 interrupted by Ctrl-C (SIGINT)
and 143 terminated by SIGTERM (128 + the signal's number, as shells report it). An
interrupted or terminated ``rlp train``/``tune``/``adapt`` leaves ``summary.json`` with
status ``interrupted`` and prints the command that resumes it. The first Ctrl-C or SIGTERM
lets Tune stop and save its state; a second one stops at once (the run then resumes from
Tune's last saved state). ``rlp serve`` stopped either way exits 0.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from rl_platform.ray_session import catch_sigterm
from rl_platform.serving.guard import BODY_TIMEOUT_S

app = typer.Typer(
    name="rlp",
    help="Multi-agent reinforcement learning on Ray: train, sweep, submit, evaluate, serve.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
envs_app = typer.Typer(help="List the registered envs and check them.", no_args_is_help=True)
app.add_typer(envs_app, name="envs")

console = Console()
err_console = Console(stderr=True)

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _interrupted_code() -> int:
    """130 after Ctrl-C, 143 after SIGTERM."""
    import signal

    from rl_platform.ray_session import received_signal

    return EXIT_TERMINATED if received_signal() == signal.SIGTERM else EXIT_INTERRUPTED


def _stopped_before_start(what: str) -> NoReturn:
    err_console.print(f"interrupted before the {what} started.", highlight=False)
    raise typer.Exit(_interrupted_code())


TrustModuleOption = Annotated[
    list[str] | None,
    typer.Option(
        "--trust-module",
        help="Trust this module and its submodules as an env source "
        "(pettingzoo:MODULE:factory); repeatable; also $RLP_TRUSTED_MODULES. Only "
        "pettingzoo.*, mpe2.* and vmas.* are trusted otherwise.",
    ),
]
TrustOption = Annotated[
    bool,
    typer.Option(
        "--trust",
        help="Resume even from a directory someone else owns or can write. Resuming "
        "unpickles its state, which runs code of whoever wrote it.",
    ),
]


def _trust_modules(names: list[str] | None) -> None:
    """Add --trust-module names to this process's (and its Ray workers') trusted modules."""
    from rl_platform.trust import UntrustedModuleError, trust_modules

    try:
        trust_modules(names or [])
    except UntrustedModuleError as err:
        _fail(str(err))


# --------------------------------------------------------------------------- train


class _ProgressTable:
    """Prints one aligned row per training iteration (and curriculum level changes).

    ``task score`` is the per-agent mean episode return of the env's own reward, before
    difference rewards, shaping and bonuses; ``level`` shows with a curriculum.
    """

    header = (
        f"{'iter':>5} {'env steps':>11} {'return mean':>12} {'task score':>11} "
        f"{'steps/s':>9} {'time':>8}"
    )

    def __init__(self) -> None:
        self.started = False

    def __call__(self, row) -> None:  # row: training.IterationRow
        if not self.started:
            level = f" {'level':>8}" if row.level else ""
            console.print(f"[bold]{self.header}{level}[/]", highlight=False)
            self.started = True
        ret = "—" if math.isnan(row.episode_return_mean) else f"{row.episode_return_mean:.3f}"
        task = row.rewards.get("env", math.nan)
        task_text = "—" if math.isnan(task) else f"{task:.3f}"
        level = f" {row.level:>8}" if row.level else ""
        console.print(
            f"{row.iteration:>5} {row.env_steps:>11,} {ret:>12} {task_text:>11} "
            f"{row.env_steps_per_s:>9,.0f} {row.time_total_s:>7.1f}s{level}",
            highlight=False,
        )
        if row.evaluation:
            ev = row.evaluation
            console.print(
                f"      [green]evaluation: score {ev['score']:.3f}, normalized "
                f"{ev['normalized']:.2f}, robustness {ev['robustness']:.2f} "
                f"({ev['level']})[/]",
                highlight=False,
            )
        if row.level_change:
            console.print(f"      [bold cyan]curriculum: {row.level_change}[/]", highlight=False)
        for message in row.anomalies:
            console.print(f"      [bold yellow]anomaly: {message}[/]", highlight=False)


def _finish_training(result) -> None:
    """Print a training run's summary; exit non-zero when it was interrupted or stopped."""
    _print_summary(result)
    if result.status == "interrupted":
        raise typer.Exit(_interrupted_code())
    if result.status == "stopped_on_anomaly":
        _fail(result.error or "stopped on an anomaly", EXIT_FAILED)


def _print_summary(result) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("status", result.status)
    if result.remote:
        table.add_row("run directory", f"{result.remote} (driver files staged in {result.run_dir})")
    else:
        table.add_row("run directory", str(result.run_dir))
    table.add_row("iterations", str(result.iterations))
    table.add_row("env steps", f"{result.env_steps:,}")
    if result.episode_return_mean is not None:
        table.add_row("return mean", f"{result.episode_return_mean:.3f}")
    best = str(result.best_checkpoint) if result.best_checkpoint else "none"
    if result.best_metric is not None:
        best += f"  ({result.metric} = {result.best_metric:.3f})"
    table.add_row("best checkpoint", best)
    table.add_row("wall time", f"{result.wall_time_s:.1f} s")
    table.add_row("env steps/s", f"{result.env_steps_per_s:,.0f} (sampled, mean over iterations)")
    if result.status == "interrupted":
        table.add_row("resume with", f"rlp train --resume {result.run_dir}")
    console.print(Panel(table, title="rlp train", expand=False))


@app.command()
def train(
    experiment: Annotated[
        Path | None, typer.Argument(help="Experiment YAML (not needed with --resume).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a field: key.path=value (YAML value)."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            help="Parent folder (or cloud URI) of run directories (default: YAML storage, "
            "else runs)."
        ),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address; default: a private local Ray.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue an interrupted run from its last checkpoint (loads its pickles: "
            "only your own run directories, unless --trust)."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Show Ray's and the workers' logs.")] = False,
    trust_module: TrustModuleOption = None,
    trust: TrustOption = False,
) -> None:
    """Train one experiment on Ray and summarise it.

    --resume unpickles the run's Tune and RLlib state, which runs code of whoever wrote
    it: it loads only directories you own that no one else can write, unless --trust.
    An env id names a module only from pettingzoo.*, mpe2.*, vmas.* or --trust-module.

    [bold]Examples[/]

      rlp train experiments/quickstart.yaml

      rlp train experiments/quickstart.yaml --set stop.training_iteration=5 --set seed=1

      rlp train --resume runs/quickstart/20261125-101500

      rlp train my_env.yaml --trust-module my_envs
    """
    from rl_platform.config import ConfigError, validate_experiment
    from rl_platform.trust import UntrustedModuleError, UntrustedStateError

    if experiment is None and resume is None:
        _fail("give an experiment YAML, or --resume RUN_DIR to continue a run.")
    if experiment is not None and resume is not None:
        _fail("give either an experiment YAML or --resume RUN_DIR, not both.")
    if resume is not None and set_:
        _fail("--set cannot change a resumed run; it continues with its config.yaml.")
    _trust_modules(trust_module)
    if experiment is not None:  # a bad file is refused before torch and Ray are imported
        try:
            validate_experiment(experiment, set_ or [])
        except ConfigError as err:
            _fail(str(err))
    from rl_platform.training import ResumeError, TrainingError
    from rl_platform.training import train as run_training

    catch_sigterm()
    try:
        result = run_training(
            experiment,
            set_ or [],
            output=output,
            address=address,
            resume=resume,
            progress=_ProgressTable(),
            verbose=verbose,
            trust=trust,
        )
    except (ConfigError, ResumeError, UntrustedStateError, UntrustedModuleError) as err:
        _fail(str(err))
    except TrainingError as err:
        _fail(str(err), EXIT_FAILED)
    except KeyboardInterrupt:
        _stopped_before_start("run")
    _finish_training(result)


@app.command()
def adapt(
    source: Annotated[
        Path, typer.Argument(help="A meta-training run directory or one of its checkpoints.")
    ],
    task: Annotated[str, typer.Option(help="The task to adapt to (usually a held-out one).")],
    iterations: Annotated[
        int | None,
        typer.Option(min=1, help="Training iterations (default: meta.inner_iterations)."),
    ] = None,
    scratch: Annotated[
        bool, typer.Option(help="Start from fresh weights instead (the comparison).")
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the run's).")] = None,
    output: Annotated[
        str | None, typer.Option(help="Parent folder of run directories (default: runs).")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address; default: a private local Ray.")
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Show Ray's and the workers' logs.")] = False,
    trust_module: TrustModuleOption = None,
) -> None:
    """Adapt meta-trained weights to a task in a few iterations (a normal training run).

    The run trains the meta-training run's experiment (without meta) on TASK, starting
    from the meta-weights of the run's last checkpoint; --scratch trains from fresh
    weights with the same budget, for comparison. It reads the run's config.yaml and its
    weights-only policies/ export (torch weights_only: nothing is unpickled).

    [bold]Examples[/]

      rlp adapt runs/meeting_point_meta/20261127-150231 --task n --iterations 2

      rlp adapt runs/meeting_point_meta/20261127-150231 --task n --iterations 2 --scratch
    """
    from rl_platform.adaptation import AdaptError
    from rl_platform.adaptation import adapt as run_adaptation
    from rl_platform.config import ConfigError
    from rl_platform.training import TrainingError
    from rl_platform.trust import UntrustedModuleError

    _trust_modules(trust_module)
    catch_sigterm()
    try:
        result = run_adaptation(
            source,
            task,
            iterations,
            scratch=scratch,
            seed=seed,
            output=output,
            address=address,
            progress=_ProgressTable(),
            verbose=verbose,
        )
    except (AdaptError, ConfigError, UntrustedModuleError) as err:
        _fail(str(err))
    except TrainingError as err:
        _fail(str(err), EXIT_FAILED)
    except KeyboardInterrupt:
        _stopped_before_start("run")
    _finish_training(result)


# --------------------------------------------------------------------------- envs, schema


@envs_app.command("list")
def envs_list() -> None:
    """List registered env and algorithm ids.

    [bold]Example[/]

      rlp envs list
    """
    from rl_platform import registry

    table = Table(title="envs")
    table.add_column("id", style="bold")
    table.add_column("description")
    for entry in registry.ENVS.values():
        table.add_row(entry.id, entry.description)
    table.add_row(
        f"{registry.PETTINGZOO_PREFIX}<module>:<factory>",
        "a PettingZoo env from pettingzoo.*, mpe2.*, vmas.* (factory env, parallel_env or "
        "raw_env) or a --trust-module, e.g. pettingzoo:mpe2.simple_spread_v3:parallel_env",
    )
    console.print(table)
    algos = Table(title="algorithms")
    algos.add_column("id", style="bold")
    algos.add_column("description")
    for entry in registry.ALGORITHMS.values():
        algos.add_row(entry.id, entry.description)
    console.print(algos)


@envs_app.command("check")
def envs_check(
    env_id: Annotated[str, typer.Argument(help="A registered env id.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Env config: key=value.")
    ] = None,
    trust_module: TrustModuleOption = None,
) -> None:
    """Run the RLlib and PettingZoo conformance checks on an env.

    [bold]Examples[/]

      rlp envs check rendezvous

      rlp envs check rendezvous --set discrete=true --set num_agents=5

      rlp envs check pettingzoo:pettingzoo.classic.rps_v2:env

      rlp envs check pettingzoo:my_envs.grid:parallel_env --trust-module my_envs
    """
    from pydantic import ValidationError

    from rl_platform import registry
    from rl_platform.config import ConfigError, apply_overrides, format_validation_error
    from rl_platform.trust import UntrustedModuleError

    _trust_modules(trust_module)
    try:
        entry = registry.get_env(env_id)
    except UntrustedModuleError as err:
        _fail(f"env id {err}.")
    if entry is None:
        _fail(
            f"unknown env {env_id!r}; expected one of: {', '.join(sorted(registry.ENVS))}, "
            "or pettingzoo:<module>:<factory>."
        )
    config: dict = {}
    try:
        config = apply_overrides({}, set_ or [], "--set")
        env_cls = entry.load()
        env_cls.config_model.model_validate({**config, **entry.bound_config})
        if hasattr(env_cls, "probe_config"):
            env_cls.probe_config({**config, **entry.bound_config})
    except ConfigError as err:
        _fail(str(err))
    except ValidationError as err:
        _fail(format_validation_error(f"env {env_id!r}", err, env_cls.config_model, what="config"))
    except ValueError as err:  # the env cannot be built with this config
        _fail(f"env {env_id!r}: invalid config {config}: {err}")
    from rl_platform.envs.checks import check_env, view_steps_per_second

    results = check_env(env_id, config)
    for result in results:
        mark = "[green]pass[/]" if result.passed else "[red]FAIL[/]"
        console.print(f"{mark}  {result.name}  {result.detail}", highlight=False)
    if not all(r.passed for r in results):
        raise typer.Exit(EXIT_FAILED)
    rate = view_steps_per_second(env_id, config, seconds=1.0)
    console.print(f"throughput: {rate:,.0f} env steps/s (RLlib view, one copy, random actions)")


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option(help="Write to this file, not stdout.")] = None,
) -> None:
    """Print the JSON Schema of the experiment YAML (for editor completion and checks).

    [bold]Example[/]

      rlp schema --output experiments/experiment.schema.json
    """
    from rl_platform.config import experiment_json_schema

    text = json.dumps(experiment_json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        console.print(f"wrote {output}")


# --------------------------------------------------------------------------- tune


class _SweepProgress:
    """Prints one line per trial event: start (with its values), iteration, end."""

    def __call__(self, event) -> None:  # event: tuning.TrialEvent
        name = f"[bold]trial {event.trial_id}[/]"
        metric = event.metric.rsplit("/", 1)[-1]
        if event.kind == "start":
            values = ", ".join(f"{k}={_fmt(v)}" for k, v in event.params.items())
            console.print(f"{name} started: {values}", highlight=False)
        elif event.kind == "result":
            value = "—" if event.value is None else f"{event.value:.3f}"
            console.print(
                f"{name} iter {event.iteration:>3}  {metric} {value:>9}  "
                f"env steps {event.env_steps:,}",
                highlight=False,
            )
        elif event.kind == "complete":
            colour = "green" if event.status == "complete" else "yellow"
            value = "—" if event.value is None else f"{event.value:.3f}"
            console.print(
                f"{name} [{colour}]{event.status}[/] after {event.iteration} iterations "
                f"({metric} {value})",
                highlight=False,
            )
        elif event.kind == "retry":
            console.print(f"{name} [yellow]failed; retry {event.iteration}[/]", highlight=False)
        elif event.kind == "error":
            console.print(f"{name} [red]FAILED[/] (retries used up)", highlight=False)


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _print_sweep(result) -> None:
    table = Table(title=f"trials ({result.metric}, {result.mode})")
    for column in ("trial", "optuna", "status", "iters", "env steps", "value"):
        table.add_column(column, justify="right" if column != "status" else "left")
    names = list(result.trials[0].params) if result.trials else []
    for name in names:
        table.add_column(name.rsplit(".", 1)[-1], justify="right")
    sign = 1.0 if result.mode == "max" else -1.0
    ranked = sorted(
        result.trials, key=lambda r: -math.inf if r.value is None else sign * r.value, reverse=True
    )
    for row in ranked:
        style = "bold green" if result.best is not None and row is result.best else None
        table.add_row(
            row.trial_id,
            "" if row.number is None else str(row.number),
            row.status + (f" ({row.failures} retries)" if row.failures else ""),
            str(row.iterations),
            f"{row.env_steps:,}",
            "—" if row.value is None else f"{row.value:.3f}",
            *[_fmt(row.params.get(n, "")) for n in names],
            style=style,
        )
    console.print(table)

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("status", result.status)
    grid.add_row("sweep directory", str(result.sweep_dir))
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts().items()))
    grid.add_row("trials", f"{len(result.trials)} of {result.num_samples}: {counts}")
    searcher = {"optuna": "Optuna TPE", "random": "random (Optuna's RandomSampler)"}
    scheduler = {"asha": "ASHA early stopping", "none": "no early stopping"}
    grid.add_row("search", f"{searcher[result.searcher]}, {scheduler[result.scheduler]}")
    if result.best is not None:
        grid.add_row(
            "best trial",
            f"{result.best.trial_id} ({result.metric} = {result.best.value:.3f})",
        )
        grid.add_row("best config", f"{result.best_yaml}  (rlp train {result.best_yaml})")
    if result.skipped_params:
        grid.add_row("not searched", "; ".join(result.skipped_params))
    grid.add_row("study", f"{result.study_name} in {result.storage}")
    grid.add_row("dashboard", f"optuna-dashboard {result.storage}")
    if result.plots:
        grid.add_row("plots", ", ".join(p.name for p in result.plots))
    grid.add_row("env steps", f"{result.env_steps:,} (all trials)")
    grid.add_row("wall time", f"{result.wall_time_s:.1f} s")
    if result.status == "interrupted":
        grid.add_row("resume with", f"rlp tune --resume {result.sweep_dir}")
    console.print(Panel(grid, title="rlp tune", expand=False))


@app.command()
def tune(
    sweep: Annotated[
        Path | None,
        typer.Argument(help="Sweep YAML: an experiment plus `tune:` (not needed with --resume)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a field: key.path=value (YAML value)."),
    ] = None,
    num_samples: Annotated[
        int | None, typer.Option(help="Trials in all (overrides tune.num_samples).")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(help="Parent folder of sweep directories (default: YAML storage, else runs)."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address; default: a private local Ray.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue a stopped or killed sweep: its sweep directory (loads its "
            "pickles: only your own sweep directories, unless --trust)."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Show Ray's and the workers' logs.")] = False,
    trust_module: TrustModuleOption = None,
    trust: TrustOption = False,
) -> None:
    """Sweep hyperparameters with Tune, the Optuna searcher and ASHA.

    Writes <output>/<name>/sweep-<timestamp>/ with the Optuna study (optuna.journal),
    trials.csv, best.yaml (the best trial as a ready-to-run experiment) and plots/.

    --resume unpickles the sweep's Tune state and trial checkpoints, which runs code of
    whoever wrote them: it loads only directories you own that no one else can write,
    unless --trust.

    [bold]Examples[/]

      rlp tune experiments/sweeps/rendezvous_ppo_sweep.yaml

      rlp tune experiments/sweeps/rendezvous_ppo_sweep.yaml --num-samples 20 -s tune.searcher=random

      rlp tune --resume runs/rendezvous_ppo_sweep/sweep-20261125-101500
    """
    from rl_platform.config import ConfigError
    from rl_platform.training import ResumeError
    from rl_platform.trust import UntrustedModuleError, UntrustedStateError

    if sweep is None and resume is None:
        _fail("give a sweep YAML, or --resume SWEEP_DIR to continue a sweep.")
    if sweep is not None and resume is not None:
        _fail("give either a sweep YAML or --resume SWEEP_DIR, not both.")
    if resume is not None and (set_ or num_samples is not None):
        _fail("--set and --num-samples cannot change a resumed sweep; it continues as it was.")
    _trust_modules(trust_module)
    catch_sigterm()
    from rl_platform.tuning import tune as run_sweep

    try:
        result = run_sweep(
            sweep,
            set_ or [],
            num_samples=num_samples,
            output=output,
            address=address,
            resume=resume,
            progress=_SweepProgress(),
            verbose=verbose,
            trust=trust,
        )
    except (ConfigError, ResumeError, UntrustedStateError, UntrustedModuleError) as err:
        _fail(str(err))
    except KeyboardInterrupt:
        _stopped_before_start("sweep")
    _print_sweep(result)
    if result.status == "interrupted":
        raise typer.Exit(_interrupted_code())


# --------------------------------------------------------------------------- later steps


ADDRESS_HELP = "Ray Jobs API, http://HOST:8265 (default $RAY_API_SERVER_ADDRESS or 127.0.0.1)."


@app.command()
def submit(
    experiment: Annotated[Path, typer.Argument(help="Experiment or sweep YAML.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a field: key.path=value (YAML value)."),
    ] = None,
    address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Where runs land: an absolute path every node sees (default: YAML)."),
    ] = None,
    follow: Annotated[
        bool, typer.Option(help="Stream the job's log until it ends; exit with its status.")
    ] = False,
    ship_package: Annotated[
        bool, typer.Option(help="Upload this rl_platform with the job (else: the cluster's).")
    ] = True,
    trust_module: TrustModuleOption = None,
) -> None:
    """Submit an experiment (rlp train) or a sweep (rlp tune) to a Ray cluster.

    The YAML is validated here first; the job runs the same command inside the cluster.
    Modules trusted here (--trust-module, $RLP_TRUSTED_MODULES) are trusted in the job.

    [bold]Examples[/]

      rlp submit experiments/quickstart.yaml --storage /data/runs --follow

      rlp submit experiments/quickstart.yaml --address http://127.0.0.1:8265 --storage /data/runs

      rlp submit experiments/sweeps/rendezvous_ppo_sweep.yaml --storage /data/runs
    """
    from rl_platform.cluster import ClusterError
    from rl_platform.cluster import submit as submit_job
    from rl_platform.config import ConfigError

    _trust_modules(trust_module)
    try:
        job = submit_job(
            experiment, set_ or [], address=address, storage=storage, ship_package=ship_package
        )
    except ConfigError as err:
        _fail(str(err))
    except ClusterError as err:
        _fail(str(err), EXIT_FAILED)
    console.print(f"submitted {job.job_id} to {job.address} (rlp {job.command})", highlight=False)
    console.print(f"runs land in {job.storage}/<name>/ on the cluster", highlight=False)
    if not follow:
        console.print(f"follow it with: rlp jobs logs {job.job_id} --follow", highlight=False)
        return
    _follow_job(job.job_id, address)


def _follow_job(job_id: str, address: str | None) -> None:
    """Stream a job's log; exit 0 if it succeeded, else 1 with its message."""
    from rl_platform.cluster import ClusterError, follow

    try:
        info = follow(job_id, address, write=lambda text: console.out(text, end=""))
    except ClusterError as err:
        _fail(str(err), EXIT_FAILED)
    except KeyboardInterrupt:
        console.print(
            f"\nstopped following; {job_id} keeps running on the cluster "
            f"(rlp jobs logs {job_id} --follow, rlp jobs stop {job_id})",
            highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if info.status == "SUCCEEDED":
        console.print(f"[green]{job_id} SUCCEEDED[/]", highlight=False)
        return
    _fail(f"{job_id} {info.status}: {info.message}", EXIT_FAILED)


jobs_app = typer.Typer(help="List, inspect, follow and stop cluster jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


def _cluster_call(function, *args, **kwargs):
    from rl_platform.cluster import ClusterError

    try:
        return function(*args, **kwargs)
    except ClusterError as err:
        _fail(str(err), EXIT_FAILED)


def _when(seconds: float | None) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "—"


@jobs_app.command("list")
def jobs_list(address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None) -> None:
    """List the cluster's jobs, newest first.

    [bold]Example[/]

      rlp jobs list --address http://127.0.0.1:8265
    """
    from rl_platform.cluster import list_jobs

    table = Table(title="jobs")
    for column in ("job id", "status", "experiment", "started", "ended"):
        table.add_column(column)
    for job in _cluster_call(list_jobs, address):
        name = job.metadata.get("experiment", "")
        table.add_row(job.job_id, job.status, name, _when(job.start_time), _when(job.end_time))
    console.print(table)


@jobs_app.command("status")
def jobs_status(
    job_id: Annotated[str, typer.Argument(help="The id rlp submit printed.")],
    address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None,
) -> None:
    """Show one job's status, times, entrypoint and message.

    [bold]Example[/]

      rlp jobs status rlp-quickstart-20261127-120715-5879
    """
    from rl_platform.cluster import job_status

    job = _cluster_call(job_status, job_id, address)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("job id", job.job_id)
    table.add_row("status", job.status)
    table.add_row("entrypoint", job.entrypoint)
    table.add_row("started", _when(job.start_time))
    table.add_row("ended", _when(job.end_time))
    for key, value in job.metadata.items():
        table.add_row(key, value)
    if job.message:
        table.add_row("message", job.message)
    console.print(table)


@jobs_app.command("logs")
def jobs_logs(
    job_id: Annotated[str, typer.Argument(help="The id rlp submit printed.")],
    address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None,
    follow: Annotated[bool, typer.Option(help="Stream until the job ends.")] = False,
) -> None:
    """Print a job's log (with --follow: stream it, exit with the job's status).

    [bold]Example[/]

      rlp jobs logs rlp-quickstart-20261127-120715-5879 --follow
    """
    from rl_platform.cluster import job_logs

    if follow:
        _follow_job(job_id, address)
        return
    console.out(_cluster_call(job_logs, job_id, address), end="")


@jobs_app.command("stop")
def jobs_stop(
    job_id: Annotated[str, typer.Argument(help="The id rlp submit printed.")],
    address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None,
) -> None:
    """Stop a running job (its checkpoints stay in storage: rlp train --resume RUN_DIR).

    [bold]Example[/]

      rlp jobs stop rlp-quickstart-20261127-120715-5879
    """
    from rl_platform.cluster import stop_job

    job = _cluster_call(stop_job, job_id, address)
    console.print(f"{job.job_id}: {job.status}", highlight=False)


@app.command()
def evaluate(
    checkpoint: Annotated[
        Path, typer.Argument(help="A checkpoint, or a run directory (its best checkpoint).")
    ],
    episodes: Annotated[int, typer.Option(help="Episodes per policy, level and test.")] = 100,
    report: Annotated[
        Path | None,
        typer.Option(help="Report directory; default RUN_DIR/evaluation/<checkpoint>."),
    ] = None,
    baselines: Annotated[
        bool, typer.Option(help="Run every test for the baselines too (else scores only).")
    ] = True,
    seed: Annotated[int, typer.Option(help="Evaluation seed: same seed, same figures.")] = 0,
    obs_noise: Annotated[
        float, typer.Option(help="Observation noise std, in units of each feature's std.")
    ] = 0.2,
    action_noise: Annotated[
        float, typer.Option(help="Probability an action is replaced by a random one.")
    ] = 0.1,
    workers: Annotated[
        int | None,
        typer.Option(help="0: play in this process; default: Ray tasks on a local Ray."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (must see the checkpoint).")
    ] = None,
    shield: Annotated[
        bool, typer.Option(help="Pass every action through the run's safety shield.")
    ] = False,
) -> None:
    """Score a checkpoint on the five evaluation dimensions against baselines.

    Writes evaluation.json (every figure), report.md, report.html and plots/*.png. Only
    the weights-only policy export is loaded, as data (no pickle); a run directory is
    read only inside itself.

    [bold]Examples[/]

      rlp evaluate runs/quickstart/20261125-101500 --episodes 50

      rlp evaluate runs/quickstart/20261125-101500/trial/checkpoint_000004 --report out/
    """
    from rl_platform.checkpoints import PolicyExportError
    from rl_platform.evaluation.suite import EvaluationError, SuiteSettings
    from rl_platform.evaluation.suite import evaluate as run_evaluation

    if episodes < 1:
        _fail(f"--episodes must be at least 1, got {episodes}.")
    if not 0.0 <= action_noise <= 1.0:
        _fail(f"--action-noise is a probability in [0, 1], got {action_noise}.")
    if obs_noise < 0.0:
        _fail(f"--obs-noise must be >= 0, got {obs_noise}.")
    settings = SuiteSettings(
        episodes=episodes,
        seed=seed,
        obs_noise=obs_noise,
        action_noise=action_noise,
        baselines=baselines,
        shield=shield,
    )
    try:
        with console.status("evaluating ..."):
            outcome = run_evaluation(
                checkpoint, settings, report=report, workers=workers, address=address
            )
    except (EvaluationError, PolicyExportError) as err:
        _fail(str(err))
    _print_evaluation(outcome)


def _print_evaluation(outcome) -> None:
    from rl_platform.evaluation.report import fmt

    result = outcome.result
    policies = result["policies"]
    table = Table(title=f"{result['env']['id']} / {result['algorithm']} at {result['level']}")
    table.add_column("", no_wrap=True)
    for policy in policies:
        table.add_column(policy, justify="right")
    table.add_row("score", *(fmt(result["scores"][p]["mean"]) for p in policies))
    table.add_row("normalized", *(fmt(result["scores"][p]["normalized"]) for p in policies))
    for dim in [*result["weights"], "overall"]:
        values = (fmt(result["dimensions"][p][dim]) for p in policies)
        table.add_row(dim.replace("_", " "), *values, end_section=dim == "adaptability")
    console.print(table)
    safety = result["details"].get("safety", {})
    if "policy" in safety:
        own = safety["policy"]
        line = f"safety: the policy breaks a constraint in {own['violation_rate']['any']:.2%}"
        line += " of agent-steps"
        if "intervention_rate" in own:
            line += f"; the shield replaced {own['intervention_rate']:.2%}"
        console.print(line, highlight=False)
    console.print(f"report: {outcome.files.get('html', outcome.report_dir)}", highlight=False)
    console.print(f"figures: {outcome.files['json']}", highlight=False)


@app.command()
def finetune(
    checkpoint: Annotated[Path, typer.Argument(help="The served checkpoint (or run dir).")],
    store: Annotated[Path, typer.Option(help="The serving feedback store (feedback.sqlite).")],
    output: Annotated[Path, typer.Option(help="New export folder (gets policies/).")],
    arm: Annotated[
        str | None, typer.Option(help="Only this arm's transitions (champion, challenger).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the transitions.")] = 20,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    temperature: Annotated[float, typer.Option(help="AWR temperature (reward stds).")] = 1.0,
    min_transitions: Annotated[int, typer.Option(help="Refuse below this many.")] = 50,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Fine-tune a policy offline from served feedback (advantage-weighted regression).

    The result is a weights-only export that `rlp serve` loads: roll it out as the
    challenger (--challenger OUTPUT) and let the A/B report judge it. The source export
    is loaded as data (no pickle); a run directory is read only inside itself.

    [bold]Example[/]

      rlp finetune runs/quickstart/20261127-115537 --store feedback.sqlite --output finetuned/
    """
    from rl_platform.evaluation.suite import EvaluationError, resolve_target
    from rl_platform.serving.finetune import finetune_from_store

    try:
        source = resolve_target(checkpoint).checkpoint
        result = finetune_from_store(
            source,
            store,
            output,
            arm=arm,
            epochs=epochs,
            lr=lr,
            temperature=temperature,
            min_transitions=min_transitions,
            seed=seed,
        )
    except (EvaluationError, ValueError, FileNotFoundError, FileExistsError) as err:
        _fail(str(err))
    console.print(
        f"fine-tuned {source} on {result.transitions} transitions: loss "
        f"{result.loss_before:.4f} -> {result.loss_after:.4f}; export in {result.out}",
        highlight=False,
    )


@app.command()
def serve(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint or run directory.")],
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    host: Annotated[
        str,
        typer.Option(
            help="Interface to bind (keep 127.0.0.1; put a proxy in front). Any other "
            "host requires a bearer token (generated if no --token-file)."
        ),
    ] = "127.0.0.1",
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="Require 'Authorization: Bearer <token>' on every endpoint, the token "
            "being this file's content (mode 0600). Default: none on 127.0.0.1; on other "
            "hosts ~/.config/rl_platform/serve-token, generated if absent."
        ),
    ] = None,
    challenger: Annotated[
        Path | None, typer.Option(help="A second checkpoint for an A/B test (same env).")
    ] = None,
    split: Annotated[float, typer.Option(help="Share of sessions the challenger serves.")] = 0.1,
    shield: Annotated[
        bool, typer.Option(help="Filter served actions through the run's safety section.")
    ] = False,
    store: Annotated[
        Path | None,
        typer.Option(help="Feedback store (sqlite); default beside the checkpoint with A/B."),
    ] = None,
    replicas: Annotated[int, typer.Option(help="Serve replicas.")] = 1,
    max_batch_size: Annotated[int, typer.Option(help="Requests per forward pass.")] = 32,
    batch_wait_ms: Annotated[float, typer.Option(help="How long a batch waits to fill.")] = 2.0,
    batching: Annotated[bool, typer.Option(help="Batch requests (serve.batch).")] = True,
    max_ongoing_requests: Annotated[
        int | None,
        typer.Option(help="Requests a replica works on at once (default 4 x --max-batch-size)."),
    ] = None,
    max_queued_requests: Annotated[
        int | None,
        typer.Option(
            help="Requests waiting for those (default: as many); more get 503 + Retry-After."
        ),
    ] = None,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a request body may take to arrive (then 408).")
    ] = BODY_TIMEOUT_S,
    reward_range: Annotated[
        tuple[float, float] | None,
        typer.Option(
            help="Feedback rewards accepted, LOW HIGH (default: the env's, else -1e9 1e9)."
        ),
    ] = None,
    proxy: Annotated[
        bool,
        typer.Option(
            help="Serve's HTTP proxy in front even for one replica in a private Ray "
            "(default there: the replica listens on --port itself, direct ingress)."
        ),
    ] = False,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster to serve on; default: a private local Ray.")
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(help="Deploy on the --address cluster and return; run again to update."),
    ] = False,
) -> None:
    """Serve a trained policy over HTTP with Ray Serve (Ctrl-C stops it).

    POST /v1/act, POST /v1/feedback, GET /v1/ab, GET /v1/info, GET /healthz; the
    OpenAPI schema is at /docs. Only the weights-only policy export is loaded.

    [bold]Examples[/]

      rlp serve runs/quickstart/20261125-101500 --port 8000

      rlp serve runs/quickstart/20261125-101500 --challenger finetuned/ --split 0.1

      rlp serve RUN --address auto --detach    # again with --challenger NEW: rolling update
    """
    from rl_platform.serving import guard

    if not 0.0 <= split <= 1.0:
        _fail(f"--split is a share in [0, 1], got {split}.")
    if not 0 < port < 65536:
        _fail(f"--port must be in 1..65535, got {port}.")
    if detach and not address:
        _fail("--detach needs --address: a private Ray ends with this process.")
    for name, value in (
        ("--max-ongoing-requests", max_ongoing_requests),
        ("--max-queued-requests", max_queued_requests),
    ):
        if value is not None and value < 1:
            _fail(f"{name} must be >= 1, got {value}.")
    if not (math.isfinite(body_timeout) and body_timeout > 0):
        _fail(f"--body-timeout must be a positive number of seconds, got {body_timeout}.")
    if reward_range is not None and not (
        all(math.isfinite(v) for v in reward_range) and reward_range[0] < reward_range[1]
    ):
        _fail(f"--reward-range must be two finite numbers LOW < HIGH, got {reward_range}.")
    if token_file is not None:
        try:  # before Ray and the checkpoint: a bad token file is the cheapest thing to fix
            guard.read_token(token_file)
        except guard.TokenFileError as err:
            _fail(f"--token-file: {err}")

    from rl_platform.serving.app import ServingError
    from rl_platform.serving.app import serve as run_server

    def ready(info) -> None:
        if info.token_file is not None:
            made = "generated now, " if info.token_created else ""
            console.print(
                f"bearer token required: 'Authorization: Bearer <token>', the token in "
                f"{info.token_file} ({made}readable by you only)",
                highlight=False,
            )
        if info.exposed:
            err_console.print(
                f"[bold yellow]warning:[/] listening on {host}: other machines can reach this "
                "server (it needs the bearer token, over plain HTTP: put a TLS proxy in front "
                "or bind 127.0.0.1)",
                highlight=False,
                soft_wrap=True,
            )
        console.print(
            f"serving {info.checkpoint} ({info.checkpoint_id}) at {info.url}"
            + (f", challenger {info.challenger} on {info.split:.0%}" if info.challenger else "")
            + (", shielded" if info.shield else "")
            + (" (direct ingress)" if info.direct_ingress else "")
            + " (Ctrl-C stops)",
            highlight=False,
        )

    try:
        run_server(
            checkpoint,
            host=host,
            port=port,
            challenger=challenger,
            split=split,
            shield=shield,
            store=store,
            num_replicas=replicas,
            max_batch_size=max_batch_size,
            batch_wait_timeout_s=batch_wait_ms / 1000.0,
            batching=batching,
            address=address,
            direct_ingress=False if proxy else None,
            on_ready=ready,
            blocking=not detach,
            token_file=token_file,
            reward_range=reward_range,
            max_ongoing_requests=max_ongoing_requests,
            max_queued_requests=max_queued_requests,
            body_timeout_s=body_timeout,
        )
    except ServingError as err:
        _fail(str(err))
    except RuntimeError as err:  # Serve could not deploy the application
        _fail(f"Ray Serve could not start the application: {err}", EXIT_FAILED)


@app.command()
def monitor(
    run_dir: Annotated[Path, typer.Argument(help="A run directory of rlp train.")],
    follow: Annotated[
        bool, typer.Option(help="Re-render as the run goes on; stop when it ends.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between checks with --follow.")] = 10.0,
) -> None:
    """Plot a run's figures and anomalies: RUN_DIR/monitor/index.html and PNGs.

    [bold]Examples[/]

      rlp monitor runs/quickstart/20261125-101500

      rlp monitor runs/quickstart/20261125-101500 --follow
    """
    from rl_platform.monitoring import follow as follow_run
    from rl_platform.monitoring import read_anomalies, render_dashboard

    if not (run_dir / "trial" / "result.json").is_file():
        _fail(f"{run_dir}: no trial/result.json; expected a run directory of rlp train.")

    def report(plots) -> None:
        anomalies = read_anomalies(run_dir)
        console.print(f"{plots['index']} ({len(anomalies)} anomalies logged)", highlight=False)
        for anomaly in anomalies:
            console.print(f"  [yellow]{anomaly.kind}[/] {anomaly.message}", highlight=False)

    if follow:
        try:
            follow_run(run_dir, interval_s=interval, on_update=report)
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
    else:
        report(render_dashboard(run_dir))


def main() -> None:
    """Entry point for ``python -m rl_platform``."""
    app()
