"""Training monitor: anomaly detection on RLlib results, a per-iteration row, a dashboard.

:class:`AnomalyDetector` turns one Tune/RLlib result per iteration into the
:class:`Anomaly` objects that start there (the rules: docs/monitoring.md);
:func:`monitor_row` flattens the figures a person watches into one row (:func:`table_row`
puts them in the run's ``metrics.csv``, :func:`read_table` reads that back);
:class:`AnomalyLog` / :func:`read_anomalies` keep ``RUN_DIR/anomalies.jsonl``;
:func:`render_dashboard` and :func:`follow` write ``RUN_DIR/monitor/``; :class:`RunMonitor`
and :func:`anomaly_stopper` serve the driver-side Tune callback and stopper. Modules:
``spec``, ``results``, ``detector``, ``io``, ``stopper``, ``dashboard``, ``callback``.
"""

from rl_platform.config.monitoring import ANOMALY_KINDS, AnomalyKind, MonitoringSpec
from rl_platform.monitoring.callback import (
    ACTIONS_KEY,
    EpisodeWindow,
    action_metrics_callback,
    episode_actions,
    smoothing_window,
)
from rl_platform.monitoring.dashboard import MONITOR_DIR, follow, render_dashboard
from rl_platform.monitoring.detector import Anomaly, AnomalyDetector
from rl_platform.monitoring.io import (
    ANOMALIES_FILE,
    LEGACY_MONITOR_CSV,
    AnomalyLog,
    append_table_row,
    read_anomalies,
    read_results,
    read_table,
)
from rl_platform.monitoring.results import flatten_result, monitor_row, table_row
from rl_platform.monitoring.stopper import RunMonitor, anomaly_stopper

__all__ = [
    "ACTIONS_KEY",
    "ANOMALIES_FILE",
    "ANOMALY_KINDS",
    "LEGACY_MONITOR_CSV",
    "MONITOR_DIR",
    "Anomaly",
    "AnomalyDetector",
    "AnomalyKind",
    "AnomalyLog",
    "EpisodeWindow",
    "MonitoringSpec",
    "RunMonitor",
    "action_metrics_callback",
    "anomaly_stopper",
    "append_table_row",
    "episode_actions",
    "flatten_result",
    "follow",
    "monitor_row",
    "read_anomalies",
    "read_results",
    "read_table",
    "render_dashboard",
    "smoothing_window",
    "table_row",
]
