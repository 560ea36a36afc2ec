"""The ``monitoring`` section of an experiment: anomaly rules and what stops a run.

Pydantic only, like every config model; the detector that applies the rules is
:mod:`rl_platform.monitoring`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from rl_platform.yaml_model import YamlModel

AnomalyKind = Literal[
    "reward_collapse", "instability", "nan", "entropy_collapse", "stalled_throughput"
]
ANOMALY_KINDS: tuple[str, ...] = AnomalyKind.__args__  # type: ignore[attr-defined]


class MonitoringSpec(YamlModel):
    """Anomaly rules and which anomalies stop a run (see the module docstring for the rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run the anomaly detector during training.")
    stop_on: list[AnomalyKind] = Field(
        default_factory=list,
        description="Anomaly kinds that stop the run when they occur (e.g. ['nan']).",
    )
    collapse_recent: int = Field(
        10, ge=1, description="reward_collapse: observations (iterations) in the recent mean."
    )
    collapse_before: int = Field(
        40, ge=1, description="reward_collapse: observations in the earlier mean before them."
    )
    collapse_ratio: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="reward_collapse: fires when recent < earlier - (1 - ratio) * scale, "
        "scale = max(|earlier|, std of the earlier window).",
    )
    window: int = Field(
        10, ge=3, description="instability: observations whose iteration-to-iteration noise counts."
    )
    instability_ratio: float = Field(
        2.0, gt=0.0, description="instability: fires when noise > ratio * return magnitude."
    )
    instability_history: int = Field(
        50, ge=1, description="instability: observations in the long-run mean of the magnitude."
    )
    instability_min_scale: float = Field(
        0.0,
        ge=0.0,
        description="instability: smallest return magnitude (env units); set it for envs "
        "whose returns hover around zero.",
    )
    entropy_floor: float | None = Field(
        0.01,
        ge=0.0,
        lt=1.0,
        description="entropy_collapse: fires when a module's entropy < floor * its initial "
        "entropy (None: off). Meant for stochastic policies.",
    )
    stall_ratio: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="stalled_throughput: fires when env steps/s < ratio * median rate so far.",
    )
    stall_warmup: int = Field(
        3, ge=1, description="stalled_throughput: earlier rates needed before it can fire."
    )
