"""``rlp train`` and ``rlp adapt``: one training run, its progress table and summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from rl_platform.cli.options import TrustModuleOption, TrustOption, use_trusted_modules
from rl_platform.cli.output import (
    EXIT_FAILED,
    console,
    fail,
    interrupted_code,
    print_notice,
    stopped_before_start,
)
from rl_platform.config import ConfigError, validate_experiment
from rl_platform.ray_session import catch_sigterm
from rl_platform.stopping import ENV_STEPS_KEY
from rl_platform.trust import UntrustedModuleError, UntrustedStateError


def print_starting(experiment=None, resume: Path | None = None, seeds=None) -> None:
    """Say at once what starts (before RLlib is imported and Ray started, which take a while)."""
    if resume is not None:
        what = f"resuming {resume}"
    else:
        stop = ", ".join(f"{k} {v:g}" for k, v in experiment.stop.model_dump().items() if v)
        what = f"training {experiment.name}: {experiment.algorithm.id} on {experiment.env.id}"
        what += f" until {stop}" if stop else ""
        if seeds:
            what += f", seeds {', '.join(map(str, seeds))}"
    console.print(
        f"rlp train: {escape(what)}; loading RLlib and starting Ray...",
        highlight=False,
        soft_wrap=True,
    )


def print_run_start(start) -> None:
    """Name the run (or group) directory and how to watch it (a ``progress.RunStart``)."""
    where = start.remote or str(start.run_dir)
    label = "group directory" if start.seeds else "run directory"
    lines = [f"{label}: {where}"]
    if start.remote:
        lines.append(f"  driver files staged in {start.run_dir}")
    from rl_platform.runs import RunDir

    watched = RunDir(start.run_dir).seed_dir(start.seeds[0]) if start.seeds else start.run_dir
    lines.append(f"  watch it: rlp monitor {watched} --follow")
    lines.append(f"            tensorboard --logdir {where}")
    for line in lines:
        console.print(escape(line), highlight=False, soft_wrap=True)


class ProgressTable:
    """Prints one aligned row per training iteration (and curriculum level changes).

    ``task score`` is the per-agent mean episode return of the env's own reward, before
    difference rewards, shaping and bonuses; ``level`` shows with a curriculum. Once
    :meth:`start` gave the stop criteria, ``iter`` (or ``env steps``, for a stop on env
    steps) shows ``k/N`` and ``left`` the time left at the mean time per iteration so far.
    """

    seed_column = False

    def __init__(self) -> None:
        self.started = False
        self.stop: dict[str, float] = {}

    def start(self, start) -> None:
        """Announce the run directory (a ``progress.RunStart``) and keep its stop criteria."""
        self.stop = dict(start.stop)
        print_run_start(start)

    def _widths(self) -> tuple[int, int]:
        iters = self.stop.get("training_iteration")
        steps = self.stop.get(ENV_STEPS_KEY)
        iter_w = max(5, 2 * len(f"{iters:g}") + 1) if iters else 5
        steps_w = max(11, 2 * len(f"{steps:,.0f}") + 1) if steps and not iters else 11
        return iter_w, steps_w

    def header(self, level: bool = False) -> str:
        """The header line (its columns follow the stop criteria given to :meth:`start`)."""
        iter_w, steps_w = self._widths()
        text = f"{'seed':>5} " if self.seed_column else ""
        text += (
            f"{'iter':>{iter_w}} {'env steps':>{steps_w}} {'return mean':>12} "
            f"{'task score':>11} {'steps/s':>9} {'time':>8}"
        )
        if self.stop:
            text += f" {'left':>8}"
        return text + (f" {'level':>8}" if level else "")

    def format_row(self, row) -> str:
        """`row` (a ``progress.IterationRow``) as one aligned line."""
        from rl_platform.progress import format_duration, progress_of

        iter_w, steps_w = self._widths()
        what, _, total, left = progress_of(self.stop, row)
        iteration = f"{row.iteration}/{total:g}" if what == "iter" else str(row.iteration)
        steps = f"{row.env_steps:,}" + (f"/{total:,.0f}" if what == "env steps" else "")
        ret = "—" if math.isnan(row.episode_return_mean) else f"{row.episode_return_mean:.3f}"
        task = row.rewards.get("env", math.nan)
        task_text = "—" if math.isnan(task) else f"{task:.3f}"
        text = f"{row.seed:>5} " if self.seed_column else ""
        text += (
            f"{iteration:>{iter_w}} {steps:>{steps_w}} {ret:>12} {task_text:>11} "
            f"{row.env_steps_per_s:>9,.0f} {row.time_total_s:>7.1f}s"
        )
        if self.stop:
            text += f" {format_duration(left):>8}"
        return text + (f" {row.level:>8}" if row.level else "")

    def __call__(self, row) -> None:
        """Print `row` (a ``progress.IterationRow``), the header before the first."""
        if not self.started:
            console.print(f"[bold]{self.header(bool(row.level))}[/]", highlight=False)
            self.started = True
        console.print(self.format_row(row), highlight=False, soft_wrap=True)
        if row.evaluation:
            ev = row.evaluation
            console.print(
                f"      [green]evaluation: score {ev['score']:.3f}, normalized "
                f"{_figure(ev['normalized'])}, robustness {_figure(ev['robustness'])} "
                f"({ev['level']})[/]",
                highlight=False,
            )
        if row.level_change:
            console.print(f"      [bold cyan]curriculum: {row.level_change}[/]", highlight=False)
        for message in row.anomalies:
            who = f"seed {row.seed}" if self.seed_column else "anomaly"
            console.print(
                f"      [bold yellow]{who}: {escape(message)}[/]", highlight=False, soft_wrap=True
            )


class SeedsProgress(ProgressTable):
    """Prints one aligned row per seed and training iteration of a multi-seed run."""

    seed_column = True


def print_seeds_summary(result) -> None:
    """Print a multi-seed run (a ``seeds.SeedsResult``): scores per seed, IQM and mean."""
    table = Table(title=f"rlp train --seeds: {result.status}")
    table.add_column("seed", justify="right")
    table.add_column("status")
    table.add_column("iterations", justify="right")
    table.add_column("greedy score", justify="right")
    scores = {}
    if result.aggregate is not None:
        scores = dict(zip(result.aggregate["seeds"], result.aggregate["scores"], strict=True))
    for seed, run in result.runs.items():
        score = scores.get(seed)
        shown = "—" if score is None else f"{score:.3f}"
        table.add_row(str(seed), run.status, str(run.iterations), shown)
    console.print(table)
    if result.aggregate is not None:
        agg = result.aggregate
        for name in ("iqm", "mean"):
            e = agg[name]
            console.print(
                f"{name.upper() if name == 'iqm' else name:>5}: {e['point']:.3f}  "
                f"95% CI [{e['low']:.3f}, {e['high']:.3f}]  ({len(agg['seeds'])} seeds, "
                f"{agg['episodes']} greedy episodes each)",
                highlight=False,
            )
        others = [f"random {agg['random']:.3f}"]
        others += [f"{k} {v:.3f}" for k, v in agg["baselines"].items()]
        console.print(f"  for reference: {', '.join(others)}", highlight=False)
    console.print(
        f"group directory: {escape(str(result.group_dir))}", highlight=False, soft_wrap=True
    )
    if result.status == "interrupted":
        console.print(
            f"resume with: rlp train --resume {escape(str(result.group_dir))}",
            highlight=False,
            soft_wrap=True,
        )


def _figure(value: float) -> str:
    """A [0, 1]-ish figure with 2 decimals; "n/a" for NaN (e.g. no baseline to normalize by)."""
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def finish_training(result) -> None:
    """Print a training run's summary; exit non-zero when it was interrupted or stopped."""
    print_summary(result)
    if result.status == "interrupted":
        raise typer.Exit(interrupted_code())
    if result.status == "stopped_on_anomaly":
        fail(result.error or "stopped on an anomaly", EXIT_FAILED)


def print_summary(result) -> None:
    """Print a training run's result (a ``training.TrainResult``): a panel, then its paths.

    Paths are printed after the panel on lines of their own that are never wrapped, so
    they can be copied whole at any terminal width.
    """
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("status", result.status)
    table.add_row("iterations", str(result.iterations))
    table.add_row("env steps", f"{result.env_steps:,}")
    if result.episode_return_mean is not None:
        table.add_row("return mean", f"{result.episode_return_mean:.3f}")
    if result.best_metric is not None:
        table.add_row("best", f"{result.metric} = {result.best_metric:.3f}")
    table.add_row("wall time", f"{result.wall_time_s:.1f} s")
    table.add_row("env steps/s", f"{result.env_steps_per_s:,.0f} (sampled, mean over iterations)")
    console.print(Panel(table, title="rlp train", expand=False))
    paths = [("run directory", str(result.remote or result.run_dir))]
    if result.remote:
        paths.append(("driver files staged in", str(result.run_dir)))
    best = str(result.best_checkpoint) if result.best_checkpoint else "none"
    paths.append(("best checkpoint", best))
    if result.status == "interrupted":
        paths.append(("resume with", f"rlp train --resume {result.run_dir}"))
    for label, path in paths:
        console.print(f"[bold]{label}:[/] {escape(path)}", highlight=False, soft_wrap=True)


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
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Train these seeds as one Tune run of concurrent trials and aggregate "
            "them: 0-4, 0,2,5, 3 or 0-2,7 (a group directory with seed_<k>/ runs)."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Show Ray's and the workers' logs.")] = False,
    trust_module: TrustModuleOption = None,
    trust: TrustOption = False,
) -> None:
    """Train one experiment on Ray and summarise it (or several seeds of it, aggregated).

    --resume unpickles the run's Tune and RLlib state, which runs code of whoever wrote
    it: it loads only directories you own that no one else can write, unless --trust.
    An env id names a module only from pettingzoo.*, mpe2.*, vmas.* or --trust-module.

    [bold]Examples[/]

      rlp train experiments/quickstart.yaml

      rlp train experiments/quickstart.yaml --set stop.training_iteration=5 --set seed=1

      rlp train --resume runs/quickstart/20261125-101500

      rlp train experiments/two_step_qmix.yaml --seeds 0-4

      rlp train my_env.yaml --trust-module my_envs
    """
    if experiment is None and resume is None:
        fail("give an experiment YAML, or --resume RUN_DIR to continue a run.")
    if experiment is not None and resume is not None:
        fail("give either an experiment YAML or --resume RUN_DIR, not both.")
    if resume is not None and set_:
        fail("--set cannot change a resumed run; it continues with its config.yaml.")
    if resume is not None and seeds is not None:
        fail("--seeds cannot change a resumed run; it continues with its seeds.")
    use_trusted_modules(trust_module)
    catch_sigterm()
    from rl_platform.runs import RunDir
    from rl_platform.seeds import parse_seeds

    config = None
    try:  # a bad YAML is refused before Ray and torch are imported (training validates again)
        seed_list = parse_seeds(seeds) if seeds is not None else None
        if experiment is not None:
            config = validate_experiment(experiment, set_ or [])
    except (ConfigError, UntrustedModuleError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        stopped_before_start("run")
    print_starting(config, resume, seed_list)
    if seed_list is not None or (resume is not None and RunDir(resume).is_seed_group()):
        train_seeds(experiment, seed_list, set_ or [], output, address, resume, verbose, trust)
        return

    from rl_platform.training import train as run_training

    table = ProgressTable()
    result = _run(
        run_training,
        experiment,
        set_ or [],
        output=output,
        address=address,
        resume=resume,
        progress=table,
        verbose=verbose,
        trust=trust,
        notice=print_notice,
        on_start=table.start,
    )
    finish_training(result)


def _run(function, *args, **kwargs):
    """``function(*args, **kwargs)`` (a training entry point), its errors as exit codes."""
    from rl_platform.training import ResumeError, TrainingError

    try:
        return function(*args, **kwargs)
    except (ConfigError, ResumeError, UntrustedStateError, UntrustedModuleError) as err:
        fail(str(err))
    except TrainingError as err:
        fail(str(err), EXIT_FAILED)
    except KeyboardInterrupt:
        stopped_before_start("run")


def train_seeds(experiment, seeds, overrides, output, address, resume, verbose, trust) -> None:
    """``rlp train --seeds`` (or ``--resume GROUP_DIR``): the seeds, their table, the aggregate."""
    from rl_platform.seeds import train_seeds as run_seeds

    table = SeedsProgress()
    result = _run(
        run_seeds,
        experiment,
        seeds,
        overrides,
        output=output,
        address=address,
        resume=resume,
        progress=table,
        verbose=verbose,
        trust=trust,
        notice=print_notice,
        on_start=table.start,
    )
    print_seeds_summary(result)
    if result.status == "interrupted":
        raise typer.Exit(interrupted_code())


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
    from rl_platform.training import TrainingError

    use_trusted_modules(trust_module)
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
            progress=ProgressTable(),
            verbose=verbose,
        )
    except (AdaptError, ConfigError, UntrustedModuleError) as err:
        fail(str(err))
    except TrainingError as err:
        fail(str(err), EXIT_FAILED)
    except KeyboardInterrupt:
        stopped_before_start("run")
    finish_training(result)
