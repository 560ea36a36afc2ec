"""Before Tune resumes a run or sweep directory: check its state, trim its tables.

:func:`check_tune_state` reads everything a resume reads (``tuner.pkl``, the search
state, the newest ``experiment_state-*.json``, each trial's latest checkpoint) the way
Tune reads it, and raises :class:`ResumeError`, changing nothing, where Tune would fail.
:func:`trim_tables` drops the rows written after the checkpoint a trial resumes from.
These files are pickles: resume only directories you (or someone you trust) wrote.
Details: docs/getting-started.md (Resume and fault tolerance).
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickletools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TUNER_FILE = "tuner.pkl"
EXPERIMENT_STATE = "experiment_state-*.json"
RUN_SEARCH_STATE = ("basic-variant-state-*.json",)
SWEEP_SEARCH_STATE = ("search_gen_state-*.json", "searcher-state-*.pkl")
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
# The run directory's own tables (rlp train): file -> its iteration column. monitor.csv
# is only in runs written before metrics.csv took its columns.
RUN_TABLES = {"metrics.csv": "iteration", "monitor.csv": "iteration"}
RUN_JSONL = {"anomalies.jsonl": "iteration"}
FINISHED = "TERMINATED"
ERRORED = "ERROR"


class ResumeError(ValueError):
    """A run directory that cannot be resumed (missing, corrupt or already finished)."""


@dataclass(frozen=True)
class TrialState:
    """One trial of a Tune directory as a resume will take it up.

    ``checkpoint`` is the latest checkpoint (what the trial restores from, None without
    one) and ``iteration`` the training iteration it was taken at (0 without one).
    """

    trial_id: str
    status: str
    path: Path
    checkpoint: Path | None
    iteration: int


def check_tune_state(
    directory: Path, search_state: Iterable[str], resume_errored: bool = True
) -> list[TrialState]:
    """Read the Tune state a resume of `directory` reads; refuse what Tune could not read.

    Args:
        directory: a run or sweep directory.
        search_state: the search-state file patterns Tune restores the search from
            (:data:`RUN_SEARCH_STATE` or :data:`SWEEP_SEARCH_STATE`); each must be there.
        resume_errored: whether trials that failed are resumed too (their checkpoints
            are then checked).

    Returns:
        Every trial, in Tune's order.

    Raises:
        ResumeError: a file is missing, empty, truncated or does not load; a checkpoint
            to resume from is gone. Nothing was changed.
    """
    _load_pickle(directory / TUNER_FILE, "Tune's tuner state")
    for pattern in search_state:
        _load_pickle(_newest(directory, pattern, "Tune's search state"), "Tune's search state")
    state_file = _newest(directory, EXPERIMENT_STATE, "Tune's experiment state")
    trials = _read_trials(directory, state_file)
    for trial in trials:
        if trial.status == FINISHED or (trial.status == ERRORED and not resume_errored):
            continue
        if trial.checkpoint is not None:
            _check_checkpoint(directory, trial)
    return trials


def resumed(trials: Iterable[TrialState], resume_errored: bool = True) -> list[TrialState]:
    """The trials a resume runs again (unfinished ones; failed ones with `resume_errored`)."""
    skip = {FINISHED} if resume_errored else {FINISHED, ERRORED}
    return [t for t in trials if t.status not in skip]


def trim_tables(run_dir: Path | None, trials: Iterable[TrialState]) -> None:
    """Before a resume: drop the rows after each resumed trial's checkpoint iteration.

    Args:
        run_dir: a ``rlp train`` run directory (its own tables are trimmed to the one
            trial's iteration), or None for a sweep (only the trials' tables).
        trials: the trials that will resume (:func:`resumed`).
    """
    trials = list(trials)
    for trial in trials:
        trim_trial_tables(trial.path, trial.iteration)
    if run_dir is not None and len(trials) == 1:
        trim_run_tables(run_dir, trials[0].iteration)


def trim_trial_tables(trial_dir: Path, last: float, in_place: bool = False) -> None:
    """Keep the rows of a trial's ``result.json`` and ``progress.csv`` up to iteration `last`.

    ``in_place`` rewrites the files where they are, for files Tune's loggers hold open
    (they append, so their next row lands after what is kept); otherwise each file is
    replaced atomically (a kill leaves the old or the new file).
    """
    _trim_jsonl(trial_dir / RESULT_FILE, "training_iteration", last, in_place)
    _trim_csv(trial_dir / PROGRESS_FILE, "training_iteration", last, in_place)


def trim_run_tables(run_dir: Path, last: float, in_place: bool = False) -> None:
    """Keep the rows of ``metrics.csv``, ``anomalies.jsonl`` (and ``monitor.csv``) to `last`."""
    for name, column in RUN_TABLES.items():
        _trim_csv(run_dir / name, column, last, in_place)
    for name, key in RUN_JSONL.items():
        _trim_jsonl(run_dir / name, key, last, in_place)


# --------------------------------------------------------------------------- reading


def _newest(directory: Path, pattern: str, what: str) -> Path:
    """The file Tune reads for `pattern`: the greatest name (Tune's own rule)."""
    matches = sorted(directory.glob(pattern))
    if not matches:
        raise ResumeError(
            f"{directory}: {what} ({pattern}) is missing, so Tune cannot continue where "
            "the run stopped. Nothing was changed; start a new run instead."
        )
    return matches[-1]


def _load_pickle(path: Path, what: str) -> Any:
    """Load a Tune pickle as Tune does (a dict), or raise ResumeError naming it."""
    import pickle  # what ray.cloudpickle.loads is

    try:
        data = path.read_bytes()
    except OSError as err:
        raise ResumeError(
            f"{path}: {what} cannot be read ({err.strerror or err}); this directory "
            "cannot be resumed. Nothing was changed."
        ) from None
    try:
        if not data:
            raise ValueError("the file is empty")
        value = pickle.loads(data)  # the user's own Tune state (see the docstring)
        if not isinstance(value, dict):
            raise ValueError(f"it holds a {type(value).__name__}, not Tune's state")
    except Exception as err:  # noqa: BLE001 (any failure to load it is the file's)
        raise ResumeError(
            f"{path}: {what} is damaged ({_reason(err)}); Tune cannot resume from it, "
            "and would start the run again from iteration 1. Nothing was changed; "
            "restore the file from a backup or start a new run."
        ) from None
    return value


def _read_trials(directory: Path, state_file: Path) -> list[TrialState]:
    """The trials of the experiment state, read by Tune's own reader."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    try:
        state = json.loads(state_file.read_bytes())
        # what Tune's controller restores: its own state and the trials (at least one)
        if not isinstance(state, dict) or not isinstance(state.get("runner_data"), dict):
            raise ValueError("no runner_data")
        if not isinstance(state.get("trial_data"), list) or not state["trial_data"]:
            raise ValueError("no trial_data")
        analysis = ExperimentAnalysis(str(state_file.resolve()))
        results = list(ResultGrid(analysis))
    except Exception as err:  # noqa: BLE001 (whatever Tune's reader fails on)
        raise ResumeError(
            f"{state_file}: Tune's experiment state is damaged ({_reason(err)}); Tune "
            "would start the run again from iteration 1, deleting its checkpoints. "
            "Nothing was changed; restore the file from a backup or start a new run."
        ) from None
    trials = []
    for trial, result in zip(analysis.trials, results):
        checkpoint, iteration = None, 0
        if result.checkpoint is not None:
            checkpoint = Path(result.checkpoint.path)
            for saved, metrics in result.best_checkpoints:
                if saved.path == result.checkpoint.path:
                    iteration = int(metrics.get("training_iteration", 0) or 0)
        path = Path(trial.path)
        trials.append(TrialState(trial.trial_id, trial.status, path, checkpoint, iteration))
    return trials


def _check_checkpoint(directory: Path, trial: TrialState) -> None:
    """The trial's latest checkpoint is a folder whose top-level pickles are whole."""
    assert trial.checkpoint is not None
    where = f"{directory}: trial {trial.trial_id} resumes from {trial.checkpoint}"
    if not trial.checkpoint.is_dir() or not any(trial.checkpoint.iterdir()):
        raise ResumeError(
            f"{where}, which is gone or empty; Tune would start the trial again. Nothing "
            "was changed; restore the checkpoint or start a new run."
        )
    for path in sorted(trial.checkpoint.glob("*.pkl")):
        try:
            for _ in pickletools.genops(io.BytesIO(path.read_bytes())):
                pass
        except Exception as err:  # noqa: BLE001 (a truncated pickle: ValueError, EOF...)
            raise ResumeError(
                f"{where}, whose {path.name} is damaged ({_reason(err)}). Nothing was "
                "changed; restore the checkpoint or start a new run."
            ) from None


def _reason(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}"[:200] if text else type(err).__name__


# --------------------------------------------------------------------------- trimming


def _trim_csv(path: Path, column: str, last: float, in_place: bool) -> None:
    """Keep the header and the whole rows whose `column` is at most `last`, byte for byte."""
    if not path.is_file():
        return
    lines = _read_lines(path)
    if not lines:
        return
    header = next(csv.reader([lines[0]]))
    if column not in header:
        return
    at = header.index(column)

    def keep(line: str) -> bool:
        if not line.endswith("\n"):
            return False  # cut short by a kill: Tune writes it again
        row = next(csv.reader([line]), [])
        return len(row) == len(header) and _iteration(row[at]) <= last

    kept = lines[:1] + [line for line in lines[1:] if keep(line)]
    if len(kept) != len(lines):
        _write(path, "".join(kept), in_place)


def _trim_jsonl(path: Path, key: str, last: float, in_place: bool) -> None:
    """Keep the JSON lines whose `key` is at most `last` (a partial last line is dropped)."""
    if not path.is_file():
        return
    lines = _read_lines(path)
    kept = [line for line in lines if line.endswith("\n") and _line_iteration(line, key) <= last]
    if len(kept) != len(lines):
        _write(path, "".join(kept), in_place)


def _read_lines(path: Path) -> list[str]:
    """The file's lines, each with its line end as written (csv's CR LF kept)."""
    with path.open(newline="") as handle:
        *lines, rest = handle.read().split("\n")
    return [line + "\n" for line in lines] + ([rest] if rest else [])


def _line_iteration(line: str, key: str) -> float:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return float("inf")
    return _iteration(record.get(key) if isinstance(record, dict) else None)


def _iteration(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def _write(path: Path, text: str, in_place: bool) -> None:
    if in_place:
        with path.open("r+", newline="") as handle:
            handle.write(text)
            handle.truncate()
        return
    temporary = path.with_name(f".{path.name}.trimmed")
    with temporary.open("w", newline="") as handle:
        handle.write(text)
    os.replace(temporary, path)
