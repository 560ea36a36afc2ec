"""When a run stops: the experiment's ``stop`` section as Tune criteria, and result lookups."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rl_platform.config import ExperimentConfig

RETURN_KEY = "env_runners/episode_return_mean"
ENV_STEPS_KEY = "num_env_steps_sampled_lifetime"


def stop_criteria(experiment: ExperimentConfig) -> dict[str, float]:
    """Tune stop criteria from the experiment's ``stop`` section."""
    keys = {
        "training_iteration": "training_iteration",
        "env_steps": ENV_STEPS_KEY,
        "episode_return_mean": RETURN_KEY,
        "time_total_s": "time_total_s",
    }
    return {keys[k]: v for k, v in experiment.stop.model_dump().items() if v is not None}


def stop_reached(experiment: ExperimentConfig, metrics: dict[str, Any]) -> bool:
    """Whether a result meets any of the experiment's stop criteria."""
    return criteria_met(stop_criteria(experiment), metrics)


def criteria_met(criteria: dict[str, float], metrics: dict[str, Any]) -> bool:
    """Whether a (nested or flattened) result reaches any ``key -> threshold`` criterion."""
    for key, threshold in criteria.items():
        value = lookup_metric(metrics, key)
        if value is not None and value >= threshold:
            return True
    return False


def lookup_metric(metrics: dict[str, Any], key: str) -> float | None:
    """A result value by its Tune key (``a/b`` for nested ``{"a": {"b": ...}}``)."""
    node: Any = metrics
    if key in metrics:
        node = metrics[key]
    else:
        for part in key.split("/"):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
    try:
        value = float(node)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
