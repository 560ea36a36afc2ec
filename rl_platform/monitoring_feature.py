"""The ``monitoring`` section's contribution to a run: the per-policy action metrics."""

from __future__ import annotations

from typing import Any

from rl_platform.monitoring import action_metrics_callback
from rl_platform.registry import Feature


class MonitoringFeature(Feature):
    """With ``monitoring.enabled``, a callback logs each policy's action distribution."""

    def callbacks(self, experiment: Any) -> list[type]:  # noqa: D102
        return [action_metrics_callback()] if experiment.monitoring.enabled else []


FEATURE = MonitoringFeature()
