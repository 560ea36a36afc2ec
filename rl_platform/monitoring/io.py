"""The monitor's files in a run directory: the anomaly log, results, ``monitor.csv``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rl_platform.monitoring.detector import Anomaly
from rl_platform.monitoring.results import monitor_row
from rl_platform.runs import TRIAL_DIR

ANOMALIES_FILE = "anomalies.jsonl"
RESULT_FILE = f"{TRIAL_DIR}/result.json"
MONITOR_CSV = "monitor.csv"


class AnomalyLog:
    """Appends anomalies to ``RUN_DIR/anomalies.jsonl``, one JSON object per line."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ANOMALIES_FILE

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


def read_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """The results in ``RUN_DIR/trial/result.json``; a line cut short (live run) is skipped.

    Parsed line by line, not with ``pandas.read_json(lines=True)``: that fails on the line
    a live run is writing and fills keys an iteration lacks with NaN, which the NaN rule
    would then report.
    """
    path = Path(run_dir) / RESULT_FILE
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


def append_monitor_csv(
    run_dir: str | Path, result: Mapping[str, Any], extra: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Append this iteration's :func:`monitor_row` to ``RUN_DIR/monitor.csv``.

    Columns are the union over iterations: when a row brings a new figure (an evaluation,
    a level), the file is rewritten with the wider header, earlier rows left blank there.
    """
    import csv

    row = monitor_row(result)
    for key, value in (extra or {}).items():
        row.setdefault(key, value)
    path = Path(run_dir) / MONITOR_CSV
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
        return row
    header += [k for k in row if k not in header]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows([*rows, row])
    return row
