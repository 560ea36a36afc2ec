"""The driver's monitor of a run (:class:`RunMonitor`) and the Tune stopper it drives."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rl_platform.config.monitoring import MonitoringSpec
from rl_platform.monitoring.detector import Anomaly, AnomalyDetector
from rl_platform.monitoring.io import AnomalyLog
from rl_platform.monitoring.results import to_number

log = logging.getLogger(__name__)


class RunMonitor:
    """The driver's monitor of one run: detector + log, safe to call twice per iteration.

    Tune calls the stopper before the callbacks with the same result; both call
    :meth:`observe`, which detects and logs once per ``training_iteration``.
    """

    def __init__(self, spec: MonitoringSpec, run_dir: str | Path) -> None:
        self.spec = spec
        self.detector = AnomalyDetector(spec)
        self.log = AnomalyLog(run_dir)
        self.log.create()
        self.anomalies: list[Anomaly] = []
        self.stop_reason: Anomaly | None = None
        self._seen: tuple[int, list[Anomaly]] | None = None

    def observe(self, result: Mapping[str, Any]) -> list[Anomaly]:
        """The anomalies starting at this result's iteration (detected and logged once)."""
        iteration = int(to_number(result.get("training_iteration")) or -1)
        if self._seen is not None and self._seen[0] == iteration:
            return self._seen[1]
        found = self.detector.observe(result) if self.spec.enabled else []
        self._seen = (iteration, found)
        self.anomalies.extend(found)
        self.log.append(found)
        for anomaly in found:
            log.warning("anomaly: %s", anomaly.message)
            if self.stop_reason is None and anomaly.kind in self.spec.stop_on:
                self.stop_reason = anomaly
        return found

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles run configs (tuner.pkl); a resumed run starts with a fresh history.
        return {"spec": self.spec, "run_dir": self.log.path.parent}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["run_dir"])


def anomaly_stopper(monitor: RunMonitor) -> Any:
    """A ``ray.tune.Stopper`` that stops the trial at the first anomaly in ``stop_on``."""
    from ray.tune import Stopper

    class AnomalyStopper(Stopper):
        """Stops a trial when :class:`RunMonitor` saw an anomaly listed in ``stop_on``."""

        def __init__(self, monitor: RunMonitor) -> None:
            self.monitor = monitor

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            self.monitor.observe(result)
            return self.monitor.stop_reason is not None

        def stop_all(self) -> bool:
            return False

    return AnomalyStopper(monitor)
