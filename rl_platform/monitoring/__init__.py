"""Training monitor: anomaly detection on RLlib results, a per-iteration row, a dashboard.

The seed's ``RLMonitoringDashboard`` logged rewards, epsilon and value estimates and flagged
"sudden performance drops" (mean of the last 10 rewards below half the mean of the 40
before) and "instability" (recent reward variance above twice its historical mean). Done
here on what RLlib reports once per training iteration:

* :class:`AnomalyDetector` is fed one Tune/RLlib result dict per iteration (nested as Tune
  passes it to callbacks, or flattened with ``/`` as in ``progress.csv``) and returns the
  :class:`Anomaly` objects whose condition *starts* at that iteration. Each condition is
  reported once per onset and re-armed once it clears. An iteration's
  ``env_runners/episode_return_mean`` (RLlib's mean over its recent episodes) is **one
  observation** in the return windows; iterations without a finite value add none.
* The rules (``MonitoringSpec`` holds every number):

  - ``reward_collapse``: with ``R`` = ``collapse_recent`` and ``B`` = ``collapse_before``,
    once ``R + B`` observations exist, let ``recent`` be the mean of the last ``R``,
    ``earlier`` the mean of the ``B`` before them and ``scale = max(|earlier|, std of
    those B)``. Collapse when ``recent < earlier - (1 - collapse_ratio) * scale``. For a
    positive, steady ``earlier`` this is the seed's ``recent < ratio * earlier``; for a
    negative one it means "worse by ``(1 - ratio) * |earlier|``" (-10 -> below -15 at
    0.5); the ``std`` term keeps a noisy near-zero baseline from firing on noise.
  - ``instability``: once ``window`` observations exist, ``noise`` = std of the
    successive differences of the last ``window`` observations / sqrt(2) (the noise of an
    i.i.d. series, nearly blind to a trend or a single step, which ``reward_collapse``
    covers) and ``scale = max(|mean of the last window|, |mean of the last
    instability_history|, instability_min_scale)``. Unstable when ``noise >
    instability_ratio * scale``, i.e. the return swings more than ``ratio`` times its
    typical magnitude from one iteration to the next.
  - ``nan``: a NaN or infinite number in any ``learners/<module>/<stat>`` (except the
    counters ``num_*``, which RLlib reports as NaN for parameter counts, and timers) or in
    the episode-return figures of ``env_runners`` (one anomaly per key).
  - ``entropy_collapse``: per module with ``learners/<module>/entropy`` (skipped when
    absent, e.g. QMIX, IQL, MADDPG), when ``entropy < entropy_floor * initial`` where
    ``initial`` is the first finite entropy seen; modules whose initial entropy is <= 0
    (narrow Gaussians: differential entropy can be negative) are skipped.
  - ``stalled_throughput``: env steps per second of an iteration (delta of
    ``num_env_steps_sampled_lifetime`` since the previous result over
    ``time_this_iter_s``) below ``stall_ratio`` times the median of the earlier
    iterations' rates, once ``stall_warmup`` earlier rates exist.

* :func:`monitor_row` flattens the figures a person watches per iteration and per policy
  (returns, reward components, exploration, value estimates, losses, KL, curriculum
  level, throughput, evaluation score) into one ``dict[str, float]``.
* :class:`AnomalyLog` appends anomalies to ``RUN_DIR/anomalies.jsonl``;
  :func:`read_anomalies` reads them back.
* :func:`render_dashboard` turns ``trial/result.json`` (a live run's partial last line is
  skipped) and ``anomalies.jsonl`` into PNGs and a self-contained ``index.html`` under
  ``RUN_DIR/monitor/``; :func:`follow` re-renders while a run is live.
* :class:`RunMonitor` ties detector and log together for the driver-side Tune callback
  and :func:`anomaly_stopper` (stop the trial on the kinds in ``stop_on``).

TensorBoard already receives every numeric result key from Tune; this package is for the
run directory, the progress display and people without TensorBoard. Modules: ``spec``
(the config model), ``results`` (reading results), ``detector``, ``io`` (run-directory
files), ``stopper`` (:class:`RunMonitor`, the Tune stopper), ``dashboard``, ``callback``
(env-runner metrics).
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
    MONITOR_CSV,
    AnomalyLog,
    append_monitor_csv,
    read_anomalies,
    read_results,
)
from rl_platform.monitoring.results import flatten_result, monitor_row
from rl_platform.monitoring.stopper import RunMonitor, anomaly_stopper

__all__ = [
    "ACTIONS_KEY",
    "ANOMALIES_FILE",
    "ANOMALY_KINDS",
    "MONITOR_CSV",
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
    "append_monitor_csv",
    "episode_actions",
    "flatten_result",
    "follow",
    "monitor_row",
    "read_anomalies",
    "read_results",
    "render_dashboard",
    "smoothing_window",
]
