"""``rlp tune``: a hyperparameter sweep, one line per trial event and the results table."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from rl_platform.cli.options import TrustModuleOption, TrustOption, use_trusted_modules
from rl_platform.cli.output import (
    console,
    fail,
    interrupted_code,
    print_notice,
    stopped_before_start,
)
from rl_platform.config import ConfigError, TuneSpec, validate_experiment
from rl_platform.ray_session import catch_sigterm
from rl_platform.trust import UntrustedModuleError, UntrustedStateError


def print_sweep_starting(config=None, resume: Path | None = None, num_samples=None) -> None:
    """Say at once what starts (before RLlib is imported and Ray started, which take a while)."""
    if resume is not None:
        what = f"resuming {resume}"
    else:
        samples = num_samples or (config.tune or TuneSpec()).num_samples
        stop = ", ".join(f"{k} {v:g}" for k, v in config.stop.model_dump().items() if v)
        what = f"sweeping {config.name}: {config.algorithm.id} on {config.env.id}, {samples} trials"
        what += f" of up to {stop}" if stop else ""
    console.print(
        f"rlp tune: {escape(what)}; loading RLlib and starting Ray...",
        highlight=False,
        soft_wrap=True,
    )


class SweepProgress:
    """Prints one line per trial event: start (with its values), iteration, end.

    Lines are never wrapped (they hold trial ids and values to copy). Once :meth:`start`
    named the sweep, iteration and end lines say how many of the N trials ended and the
    time left at the pace so far (a ``progress.SweepClock``).
    """

    def __init__(self) -> None:
        self.clock = None
        self.began: float | None = None  # when the first trial started

    def start(self, start) -> None:
        """Name the sweep directory and how to watch it (a ``progress.SweepStart``)."""
        from rl_platform.progress import SweepClock

        self.clock = SweepClock(start.num_samples, start.stop)
        where = str(start.sweep_dir)
        lines = [
            f"sweep directory: {where}",
            f"  watch it: tensorboard --logdir {where}",
            f"            rlp monitor {Path(where) / 'trial_<id>'} --follow",
        ]
        for line in lines:
            console.print(escape(line), highlight=False, soft_wrap=True)

    def _pace(self, event) -> str:
        """``  trials k/N  left T`` after `event` (empty before :meth:`start`)."""
        if self.clock is None:
            return ""
        from rl_platform.progress import format_duration

        now = time.monotonic()
        self.began = self.began if self.began is not None else now
        if event.kind == "result":
            self.clock.iteration(event.trial_id, event.iteration, now - self.began)
        else:
            self.clock.finished(event.trial_id, now - self.began)
        left = format_duration(self.clock.seconds_left())
        return f"  trials {self.clock.trials_done}/{self.clock.num_samples}  left {left}"

    def __call__(self, event) -> None:
        """Print `event` (a ``tuning.TrialEvent``) as one line."""
        name = f"[bold]trial {event.trial_id}[/]"
        metric = event.metric.rsplit("/", 1)[-1]
        if event.kind == "start":
            if self.began is None:
                self.began = time.monotonic()
            values = ", ".join(f"{k}={fmt(v)}" for k, v in event.params.items())
            console.print(f"{name} started: {values}", highlight=False, soft_wrap=True)
        elif event.kind == "result":
            value = "—" if event.value is None else f"{event.value:.3f}"
            iters = f"{event.iteration:>3}"
            if self.clock is not None and self.clock.per_trial:
                iters += f"/{self.clock.per_trial:g}"
            console.print(
                f"{name} iter {iters}  {metric} {value:>9}  "
                f"env steps {event.env_steps:,}{self._pace(event)}",
                highlight=False,
                soft_wrap=True,
            )
        elif event.kind == "complete":
            colour = "green" if event.status == "complete" else "yellow"
            value = "—" if event.value is None else f"{event.value:.3f}"
            console.print(
                f"{name} [{colour}]{event.status}[/] after {event.iteration} iterations "
                f"({metric} {value}){self._pace(event)}",
                highlight=False,
                soft_wrap=True,
            )
        elif event.kind == "retry":
            console.print(
                f"{name} [yellow]failed; retry {event.iteration}[/]",
                highlight=False,
                soft_wrap=True,
            )
        elif event.kind == "error":
            console.print(
                f"{name} [red]FAILED[/] (retries used up){self._pace(event)}",
                highlight=False,
                soft_wrap=True,
            )


def fmt(value) -> str:
    """A searched value as the tables show it: floats to 4 significant digits."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_sweep(result) -> None:
    """Print a sweep's trials (best first) and its summary (a ``tuning.SweepResult``)."""
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
            *[fmt(row.params.get(n, "")) for n in names],
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
    from rl_platform.training import ResumeError

    if sweep is None and resume is None:
        fail("give a sweep YAML, or --resume SWEEP_DIR to continue a sweep.")
    if sweep is not None and resume is not None:
        fail("give either a sweep YAML or --resume SWEEP_DIR, not both.")
    if resume is not None and (set_ or num_samples is not None):
        fail("--set and --num-samples cannot change a resumed sweep; it continues as it was.")
    use_trusted_modules(trust_module)
    catch_sigterm()
    config = None
    try:  # a bad YAML is refused before Ray and torch are imported (tune validates again)
        if sweep is not None:
            config = validate_experiment(sweep, set_ or [])
    except (ConfigError, UntrustedModuleError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        stopped_before_start("sweep")
    print_sweep_starting(config, resume, num_samples)
    from rl_platform.tuning import tune as run_sweep

    progress = SweepProgress()
    try:
        result = run_sweep(
            sweep,
            set_ or [],
            num_samples=num_samples,
            output=output,
            address=address,
            resume=resume,
            progress=progress,
            verbose=verbose,
            trust=trust,
            notice=print_notice,
            on_start=progress.start,
        )
    except (ConfigError, ResumeError, UntrustedStateError, UntrustedModuleError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        stopped_before_start("sweep")
    print_sweep(result)
    if result.status == "interrupted":
        raise typer.Exit(interrupted_code())
