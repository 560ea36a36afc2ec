"""What a run reports while it trains: its rows, its start, and the Python API's printer.

:class:`IterationRow` is one training iteration's figures, :class:`RunStart` what a run
announces once its directory exists (before Ray starts); :class:`StreamProgress` writes
both to stderr for notebook callers (``rlp train`` renders them with its own table).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rl_platform.stopping import ENV_STEPS_KEY


@dataclass(frozen=True)
class IterationRow:
    """What the progress display shows for one training iteration.

    ``level`` is the curriculum level ("" without a curriculum) and ``level_change`` says
    what changed after this iteration ("" when nothing did). ``rewards`` holds the
    per-agent mean episode sum of each reward part (``env_runners/rewards/<name>``);
    ``curiosity`` the per-step intrinsic and extrinsic rewards and ICM losses of a run with
    ``curiosity:`` (``result["curiosity"]``, written as ``curiosity_<name>`` columns).
    """

    iteration: int
    env_steps: int
    episode_return_mean: float
    env_steps_per_s: float
    time_total_s: float
    level: str = ""
    level_change: str = ""
    rewards: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)  # measured at this iteration
    anomalies: list[str] = field(default_factory=list)  # set by the driver's monitor
    curiosity: dict[str, float] = field(default_factory=dict)
    seed: int | None = None  # the seed of a multi-seed run (rlp train --seeds)

    def csv_row(self, reward_names: list[str]) -> dict[str, Any]:
        """The row of metrics.csv: figures, level, reward parts, evaluation score.

        ``eval_score`` is NaN where no evaluation was measured at this iteration.
        """
        skip = ("rewards", "level_change", "evaluation", "anomalies", "curiosity", "seed")
        row = {k: v for k, v in asdict(self).items() if k not in skip}
        row.update({f"reward_{n}": self.rewards.get(n, math.nan) for n in reward_names})
        row.update({f"curiosity_{n}": v for n, v in self.curiosity.items()})
        row["eval_score"] = self.evaluation.get("score", math.nan)
        return row


@dataclass(frozen=True)
class RunStart:
    """What :func:`train` announces once its run directory exists, before Ray starts.

    ``run_dir`` is the local run (or group) directory (a staging folder when ``remote``
    names the cloud URI Tune writes to); ``stop`` holds the Tune stop criteria, from
    which progress is measured (:func:`progress_of`).
    """

    run_dir: Path
    stop: dict[str, float]
    remote: str | None = None
    resumed: bool = False
    seeds: tuple[int, ...] = ()


# --------------------------------------------------------------------------- progress


def progress_of(
    stop: dict[str, float], row: IterationRow
) -> tuple[str, float, float, float | None]:
    """How far `row` is towards the stop: ``(what, done, total, seconds_left)``.

    ``what`` is ``"iter"`` for a ``training_iteration`` stop, ``"env steps"`` for an env
    steps stop (that order), ``""`` when neither is set (``done``/``total`` are then 0).
    ``seconds_left`` extrapolates the mean time per iteration (or env step) so far and
    takes the nearest of the iteration, env steps and time stops; None when none is set or
    nothing was measured yet. A stop on the return cannot be foreseen.
    """
    iters = stop.get("training_iteration")
    steps = stop.get(ENV_STEPS_KEY)
    lefts = []
    elapsed = row.time_total_s
    if iters and row.iteration > 0 and elapsed > 0:
        lefts.append(max(iters - row.iteration, 0) * elapsed / row.iteration)
    if steps and row.env_steps > 0 and elapsed > 0:
        lefts.append(max(steps - row.env_steps, 0) * elapsed / row.env_steps)
    if stop.get("time_total_s"):
        lefts.append(max(stop["time_total_s"] - elapsed, 0.0))
    left = min(lefts) if lefts else None
    if iters:
        return "iter", float(row.iteration), float(iters), left
    if steps:
        return "env steps", float(row.env_steps), float(steps), left
    return "", 0.0, 0.0, left


def format_duration(seconds: float | None) -> str:
    """``45s``, ``3m 05s``, ``2h 07m``; ``?`` for None."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def compact_line(row: IterationRow, stop: dict[str, float]) -> str:
    """One line per iteration for the Python API's default progress (no colours, no table)."""
    what, done, total, left = progress_of(stop, row)
    head = f"iter {row.iteration}"
    if what == "iter":
        head = f"iter {row.iteration}/{total:g}"
    steps = f"env steps {row.env_steps:,}"
    if what == "env steps":
        steps += f"/{total:,.0f}"
    ret = "—" if math.isnan(row.episode_return_mean) else f"{row.episode_return_mean:.3f}"
    seed = f"seed {row.seed}  " if row.seed is not None else ""
    return (
        f"{seed}{head}  {steps}  return {ret}  {row.time_total_s:.1f}s"
        f"  left {format_duration(left)}"
    )


class StreamProgress:
    """The Python API's default progress: the run directory, then one line per iteration.

    Writes to `stream` (default ``sys.stderr``); ``rlp train`` passes its own renderers.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.stop: dict[str, float] = {}

    def _write(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(text + "\n")
        stream.flush()

    def start(self, start: RunStart) -> None:
        """Name the run directory (and the remote one) before Ray starts."""
        self.stop = dict(start.stop)
        where = start.remote or start.run_dir
        self._write(f"rl_platform: {'resuming' if start.resumed else 'training'} in {where}")

    def __call__(self, row: IterationRow) -> None:
        """Write `row` as one compact line."""
        self._write(compact_line(row, self.stop))


# --------------------------------------------------------------------------- sweeps


@dataclass(frozen=True)
class SweepStart:
    """What :func:`rl_platform.tune` announces once its sweep directory exists, before Ray.

    ``num_samples`` is the number of trials; ``stop`` each trial's Tune stop criteria.
    """

    sweep_dir: Path
    num_samples: int
    stop: dict[str, float]
    resumed: bool = False


class SweepClock:
    """How far a sweep is: trials finished of N, and the time left at the pace so far.

    Fed every trial's latest iteration (:meth:`iteration`) and its end (:meth:`finished`).
    With a ``training_iteration`` stop of I per trial the work is N x I iterations (a
    trial that ends early, stopped by the scheduler, counts as I); without one it is N
    trials. The time left is the elapsed time over the work done, times the work left.
    """

    def __init__(self, num_samples: int, stop: dict[str, float], elapsed_s: float = 0.0) -> None:
        self.num_samples = num_samples
        self.per_trial = float(stop.get("training_iteration") or 0.0)
        self.iterations: dict[str, int] = {}
        self.ended: set[str] = set()
        self.elapsed_s = elapsed_s

    def iteration(self, trial_id: str, iteration: int, elapsed_s: float) -> None:
        """A trial reported `iteration`; `elapsed_s` since the sweep started."""
        self.iterations[trial_id] = iteration
        self.elapsed_s = elapsed_s

    def finished(self, trial_id: str, elapsed_s: float) -> None:
        """A trial ended (complete, stopped early or failed for good)."""
        self.ended.add(trial_id)
        self.elapsed_s = elapsed_s

    @property
    def trials_done(self) -> int:
        """Trials that ended."""
        return len(self.ended)

    def seconds_left(self) -> float | None:
        """The estimated time left, None before anything was measured."""
        if self.per_trial:
            done = sum(
                self.per_trial if t in self.ended else min(i, self.per_trial)
                for t, i in self.iterations.items()
            ) + self.per_trial * len(self.ended - set(self.iterations))
            total = self.num_samples * self.per_trial
        else:
            done, total = float(len(self.ended)), float(self.num_samples)
        if done <= 0 or self.elapsed_s <= 0:
            return None
        return max(total - done, 0.0) * self.elapsed_s / done


class SweepStreamProgress:
    """The Python API's default sweep progress: the sweep directory, then a line per event.

    Iteration and end lines say how many of the N trials ended and the time left (a
    :class:`SweepClock`). Writes to `stream` (default ``sys.stderr``); ``rlp tune`` renders
    the same events with its own console.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.clock: SweepClock | None = None
        self.began: float | None = None

    def _write(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(text + "\n")
        stream.flush()

    def start(self, start: SweepStart) -> None:
        """Name the sweep directory before Ray starts."""
        self.clock = SweepClock(start.num_samples, start.stop)
        verb = "resuming" if start.resumed else "sweeping"
        self._write(f"rl_platform: {verb} {start.num_samples} trials in {start.sweep_dir}")

    def __call__(self, event: Any) -> None:
        """Write `event` (a ``tuning.TrialEvent``) as one line; retries and starts too."""
        now = time.monotonic()
        self.began = self.began if self.began is not None else now
        value = "-" if event.value is None else f"{event.value:.3f}"
        metric = event.metric.rsplit("/", 1)[-1]
        if event.kind == "start":
            values = ", ".join(f"{k}={v}" for k, v in event.params.items())
            self._write(f"trial {event.trial_id} started: {values}")
            return
        if event.kind == "retry":
            self._write(f"trial {event.trial_id} failed; retry {event.iteration}")
            return
        if event.kind == "result":
            what = f"iter {event.iteration}  {metric} {value}  env steps {event.env_steps:,}"
            if self.clock is not None:
                self.clock.iteration(event.trial_id, event.iteration, now - self.began)
        else:
            status = "FAILED (retries used up)" if event.kind == "error" else event.status
            what = f"{status} after {event.iteration} iterations ({metric} {value})"
            if self.clock is not None:
                self.clock.finished(event.trial_id, now - self.began)
        pace = ""
        if self.clock is not None:
            left = format_duration(self.clock.seconds_left())
            pace = f"  trials {self.clock.trials_done}/{self.clock.num_samples}  left {left}"
        self._write(f"trial {event.trial_id} {what}{pace}")
