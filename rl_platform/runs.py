"""Run and sweep directories: made without races, written by one process at a time.

:func:`new_run_dir` makes ``<output>/<name>/<prefix><timestamp>`` with one atomic
``mkdir``: two commands started in the same second get ``<stamp>`` and ``<stamp>-2``.
:func:`hold` locks a directory (an exclusive ``flock`` on its ``.rlp.lock`` file, holding
the owner's pid) until the function decorated with :func:`holds_directories` that took
it returns, so a second ``rlp train --resume`` or ``rlp tune --resume`` of a directory in
use is refused instead of writing beside the first; :func:`check_free` asks the same
question without writing, before a resume reads the directory's state. The kernel drops
the lock when its process dies (even on SIGKILL), so a killed run never leaves its
directory locked.
"""

from __future__ import annotations

import contextvars
import fcntl
import functools
import json
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ParamSpec, TypeVar

from rl_platform.resume import ResumeError

if TYPE_CHECKING:
    from rl_platform.config import ExperimentConfig

# The run directory's layout: every module that reads or writes one names its files here.
CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"
TRIAL_DIR = "trial"
LOCK_FILE = ".rlp.lock"
# A sweep directory's own files (besides SUMMARY_FILE and LOCK_FILE).
SWEEP_FILE = "sweep.yaml"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.yaml"
PLOTS_DIR = "plots"
# A multi-seed group directory's own files (besides LOCK_FILE and Tune's state); each seed
# is a run directory ``seed_<k>/`` inside it.
SEEDS_FILE = "seeds.json"
AGGREGATE_FILE = "aggregate.json"
# aggregate.json's keys, exactly: seeds.aggregate_record writes them, rlp compare reads them.
AGGREGATE_KEYS = frozenset(
    ("kind", "name", "algorithm", "env", "score", "episodes", "seeds", "scores", "runs")
    + ("random", "baselines", "iqm", "mean", "curve", "commit", "machine")
)
AGGREGATE_PLOT = "aggregate.png"
SEED_DIR_PREFIX = "seed_"
# Tune's saved experiment state: a run or sweep can be resumed when both are there.
TUNER_FILE = "tuner.pkl"
EXPERIMENT_STATE_GLOB = "experiment_state-*.json"
STAMP_FORMAT = "%Y%m%d-%H%M%S"
# How long a refused process waits for the holder to have written its pid.
PID_WAIT_S = 1.0

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class RunDir:
    """A run or sweep directory: the paths of its files, and its summary.

    ``RunDir(path).summary`` is ``path / SUMMARY_FILE``; every module that reads or
    writes a run directory spells its paths through this class.
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        """The experiment the run trains (``config.yaml``)."""
        return self.path / CONFIG_FILE

    @property
    def summary(self) -> Path:
        """The outcome, written when the run or sweep ends (``summary.json``)."""
        return self.path / SUMMARY_FILE

    @property
    def metrics(self) -> Path:
        """One row per training iteration (``metrics.csv``)."""
        return self.path / METRICS_FILE

    @property
    def trial(self) -> Path:
        """A run's one Tune trial folder (checkpoints, ``progress.csv``, ``error.txt``)."""
        return self.path / TRIAL_DIR

    @property
    def lock(self) -> Path:
        """The lock file the process writing the directory holds (:func:`hold`)."""
        return self.path / LOCK_FILE

    @property
    def sweep(self) -> Path:
        """A sweep's resolved sweep YAML (``sweep.yaml``)."""
        return self.path / SWEEP_FILE

    @property
    def trials_table(self) -> Path:
        """A sweep's table of trials (``trials.csv``)."""
        return self.path / TRIALS_FILE

    @property
    def best(self) -> Path:
        """A sweep's best experiment, ready to train (``best.yaml``)."""
        return self.path / BEST_FILE

    @property
    def plots(self) -> Path:
        """A sweep's plots folder."""
        return self.path / PLOTS_DIR

    @property
    def seeds(self) -> Path:
        """A multi-seed group's seeds and experiment (``seeds.json``)."""
        return self.path / SEEDS_FILE

    @property
    def aggregate(self) -> Path:
        """A multi-seed group's scores and aggregates (``aggregate.json``)."""
        return self.path / AGGREGATE_FILE

    @property
    def aggregate_plot(self) -> Path:
        """A multi-seed group's learning curves with their band (``aggregate.png``)."""
        return self.path / AGGREGATE_PLOT

    def seed_dir(self, seed: int) -> Path:
        """Seed `seed`'s run directory in a multi-seed group (``seed_<k>``)."""
        return self.path / f"{SEED_DIR_PREFIX}{seed}"

    def seed_dirs(self) -> dict[int, Path]:
        """The group's seed run directories, by seed, in seed order."""
        found = {}
        for child in self.path.glob(f"{SEED_DIR_PREFIX}*"):
            number = child.name[len(SEED_DIR_PREFIX) :]
            if child.is_dir() and number.isdigit():
                found[int(number)] = child
        return dict(sorted(found.items()))

    def is_seed_group(self) -> bool:
        """Whether this is a multi-seed group directory (``rlp train --seeds``)."""
        return self.seeds.is_file()

    def has_tune_state(self) -> bool:
        """Whether Tune saved an experiment state here (a resume restores from it)."""
        return (self.path / TUNER_FILE).is_file() and any(self.path.glob(EXPERIMENT_STATE_GLOB))

    def read_summary(self) -> dict[str, Any] | None:
        """The summary, or None when it is missing or not valid JSON."""
        return read_json(self.summary)

    def write_summary(self, data: dict[str, Any]) -> None:
        """Write the summary (indented JSON)."""
        self.summary.write_text(json.dumps(data, indent=2) + "\n")


class DirectoryInUseError(ResumeError):
    """Another live process holds the directory (it is training or resuming it)."""


def new_run_dir(output: Path, name: str, prefix: str = "", now: datetime | None = None) -> Path:
    """Make a new ``<output>/<name>/<prefix><timestamp>`` folder (``-2``, ``-3``... if taken).

    The folder is made by one ``mkdir`` that fails when it exists, so concurrent callers
    (processes started in the same second) each get their own.
    """
    parent = Path(output) / name
    parent.mkdir(parents=True, exist_ok=True)
    stamp = prefix + (now or datetime.now()).strftime(STAMP_FORMAT)
    suffix = 1
    while True:
        run_dir = parent / (stamp if suffix == 1 else f"{stamp}-{suffix}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            suffix += 1
            continue
        return run_dir


class DirectoryLock:
    """An exclusive lock on a run or sweep directory, held until :meth:`release`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = RunDir(self.directory).lock
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or refuse at once when a live process holds it.

        Raises:
            DirectoryInUseError: naming the directory and the holder's pid.
        """
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise self._in_use() from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def check_free(self) -> None:
        """Refuse at once when a live process holds the lock; change nothing either way.

        Raises:
            DirectoryInUseError: naming the directory and the holder's pid.
        """
        try:
            handle = self.path.open("r")
        except FileNotFoundError:
            return  # never held
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._in_use() from None
            fcntl.flock(handle, fcntl.LOCK_UN)

    def release(self) -> None:
        """Let go of the lock (the lock file stays; a stale pid in it means nothing)."""
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._handle is not None

    def _in_use(self) -> DirectoryInUseError:
        return DirectoryInUseError(
            f"{self.directory}: in use by pid {self._holder() or '(unknown)'}, which is "
            "training or resuming it; wait for that process to end (or stop it), then resume "
            "again. Nothing was changed."
        )

    def _holder(self) -> str:
        """The holder's pid as it wrote it (it may still be writing it: wait briefly)."""
        deadline = time.monotonic() + PID_WAIT_S
        while True:
            try:
                text = self.path.read_text().strip()
            except OSError:
                text = ""
            if text.isdigit() or time.monotonic() > deadline:
                return text if text.isdigit() else ""
            time.sleep(0.05)


_held: contextvars.ContextVar[ExitStack | None] = contextvars.ContextVar("_held", default=None)


def holds_directories(function: Callable[P, R]) -> Callable[P, R]:
    """Decorate an entry point: the directories it :func:`hold` s are released when it ends."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with ExitStack() as stack:
            token = _held.set(stack)
            try:
                return function(*args, **kwargs)
            finally:
                _held.reset(token)

    return wrapper


def check_free(directory: Path) -> None:
    """Refuse a directory another live process holds, without writing anything to it.

    A resume calls this before it reads the directory's state (which the holder may be
    writing), and :func:`hold` once that state passed its checks.

    Raises:
        DirectoryInUseError: another live process holds it.
    """
    DirectoryLock(directory).check_free()


def hold(directory: Path) -> DirectoryLock:
    """Lock ``directory`` until the enclosing :func:`holds_directories` function returns.

    Raises:
        DirectoryInUseError: another live process holds it.
        RuntimeError: called outside a :func:`holds_directories` function.
    """
    stack = _held.get()
    if stack is None:
        raise RuntimeError("hold() needs an enclosing @holds_directories function")
    lock = DirectoryLock(directory)
    lock.acquire()
    stack.callback(lock.release)
    return lock


def output_dir(output: str | Path | None, experiment: ExperimentConfig) -> Path:
    """Where run directories go: ``output``, else the experiment's ``storage``, else runs/."""
    if output is not None:
        return Path(output)
    return Path(experiment.storage or "runs")


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """A run or sweep directory's ``summary.json``, or None when missing or invalid."""
    return RunDir(run_dir).read_summary()


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or None when it is missing or not valid JSON."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
