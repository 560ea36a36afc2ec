"""The monitor's files in a run directory: the anomaly log, Tune's results, the run's table.

A run has one per-iteration table of its own, ``metrics.csv`` (:func:`append_table_row`
writes it, :func:`read_table` reads it for the dashboard); runs written before it held
the monitor's columns have those in ``monitor.csv`` (:data:`LEGACY_MONITOR_CSV`), which
:func:`read_table` reads where it is.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rl_platform.monitoring.detector import Anomaly
from rl_platform.monitoring.results import TABLE_NAMES, TABLE_PREFIXES, monitor_row
from rl_platform.runs import METRICS_FILE, TRIAL_DIR

if TYPE_CHECKING:  # pandas is imported when a table is read, not with the package
    import pandas as pd

ANOMALIES_FILE = "anomalies.jsonl"
RESULT_FILE = f"{TRIAL_DIR}/result.json"
LEGACY_MONITOR_CSV = "monitor.csv"  # runs from before metrics.csv held the monitor's columns


class AnomalyLog:
    """Appends anomalies to ``RUN_DIR/anomalies.jsonl``, one JSON object per line."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ANOMALIES_FILE

    def create(self) -> None:
        """Make the (empty) log in an existing run directory: the run is watched.

        ``rlp monitor`` replays the rules only for runs without a log.
        """
        if self.path.parent.is_dir():
            self.path.touch(exist_ok=True)

    def append(self, anomalies: Iterable[Anomaly]) -> None:
        """Append ``anomalies`` (nothing is written, not even the file, for none)."""
        lines = [json.dumps(a.to_json()) + "\n" for a in anomalies]
        if lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.writelines(lines)


def read_anomalies(run_dir: str | Path) -> list[Anomaly]:
    """The anomalies logged in ``RUN_DIR/anomalies.jsonl`` (empty when none were)."""
    path = Path(run_dir) / ANOMALIES_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(Anomaly.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash
    return out


def result_file(run_dir: str | Path) -> Path:
    """Tune's ``result.json`` of a run (``RUN_DIR/trial/``) or of a sweep's trial folder."""
    run_dir = Path(run_dir)
    nested = run_dir / RESULT_FILE
    own = run_dir / Path(RESULT_FILE).name
    return own if not nested.exists() and own.exists() else nested


def read_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """The results in :func:`result_file`; a line cut short (live run) is skipped.

    Parsed line by line, not with ``pandas.read_json(lines=True)``: that fails on the line
    a live run is writing, fills keys an iteration lacks with NaN (which the NaN rule
    would then report) and turns a NaN inside a nested dict (a NaN loss under
    ``learners``) into None (which it would miss). The per-iteration table, a flat CSV,
    is read with pandas (:func:`read_table`).
    """
    path = result_file(run_dir)
    if not path.exists():
        return []
    results = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return results


def append_table_row(path: str | Path, row: Mapping[str, Any]) -> None:
    """Append `row` to the CSV at `path`; its columns are the union over the rows.

    When a row brings a new column (an evaluation, a level), the file is rewritten with the
    wider header, earlier rows left blank there.
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    header: list[str] = []
    if path.is_file():
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            if not set(row) <= set(header):
                rows = list(reader)
    if header and set(row) <= set(header):
        with path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=header).writerow(row)
        return
    header += [k for k in row if k not in header]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows([*rows, row])


def complete_lines(path: Path) -> str:
    """The text of `path` without a last line that is still being written (no newline)."""
    text = path.read_text(encoding="utf-8")
    return text if text.endswith("\n") else text[: text.rfind("\n") + 1]


def read_table(run_dir: str | Path) -> pd.DataFrame:
    """The run's per-iteration figures, in :func:`monitor_row`'s column names.

    Read from ``metrics.csv`` (a live run's partial last line is skipped), its columns
    ``reward_<part>`` and ``eval_score`` renamed ``reward/<part>``, ``evaluation/score``.
    A run written before metrics.csv held the monitor's columns has them in
    ``monitor.csv``: both are read, monitor.csv's value taken where both have one. A
    directory with Tune's ``trial/result.json`` only gets :func:`monitor_frame` of it.
    Indexed by training iteration (a row without one takes its 1-based position).
    """
    run_dir = Path(run_dir)
    frames = [
        _read_csv(run_dir / name, renames)
        for name, renames in ((LEGACY_MONITOR_CSV, False), (METRICS_FILE, True))
        if (run_dir / name).is_file()
    ]
    if not frames:
        return monitor_frame(read_results(run_dir))
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.combine_first(other)
    return frame


def _read_csv(path: Path, renames: bool) -> pd.DataFrame:
    """A table's complete rows indexed by iteration, in monitor_row's names if `renames`."""
    import io

    import pandas as pd

    text = complete_lines(path)
    frame = pd.read_csv(io.StringIO(text)) if text.strip() else pd.DataFrame()
    if renames:
        names = {table: name for name, table in TABLE_NAMES.items()}
        for column in frame.columns:
            for prefix, table in TABLE_PREFIXES.items():
                if column.startswith(table):
                    names[column] = prefix + column[len(table) :]
        frame = frame.rename(columns={k: v for k, v in names.items() if v not in frame.columns})
    frame = indexed_by_iteration(frame)
    return frame[~frame.index.duplicated(keep="last")]  # a row written again by a resume


def monitor_frame(results: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One :func:`monitor_row` per result, indexed by training iteration.

    A figure an iteration did not report is NaN there; a row without an iteration takes
    its position (1-based).
    """
    import pandas as pd

    return indexed_by_iteration(pd.DataFrame([monitor_row(r) for r in results]))


def indexed_by_iteration(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` indexed by its ``iteration`` column (a row without one: its 1-based position)."""
    import numpy as np
    import pandas as pd

    position = pd.Series(np.arange(1, len(frame) + 1, dtype=float), index=frame.index)
    iteration = frame["iteration"] if "iteration" in frame else position
    return frame.set_index(iteration.fillna(position).rename("iteration"))
