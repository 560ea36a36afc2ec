"""The experiment YAML as pydantic models, and loading it with overrides.

Torch- and Ray-free: validating an experiment (and its JSON Schema) imports neither. The
parts: :mod:`~rl_platform.config.sections` and :mod:`~rl_platform.config.features` (the
sections), :mod:`~rl_platform.config.algorithms` (each algorithm's hyperparameters,
declared once), :mod:`~rl_platform.config.experiment` (:class:`ExperimentConfig`),
:mod:`~rl_platform.config.loading` (files, overrides, resolution against the registry)
and :mod:`~rl_platform.config.messages` (error messages for people).
"""

from __future__ import annotations

from typing import Any

from rl_platform.config.algorithms import (
    ALGORITHM_SPECS,
    AlgorithmParams,
    AlgorithmSection,
    AlgorithmSpec,
    IPPOParams,
    IQLParams,
    MADDPGParams,
    MAPPOParams,
    PluginAlgorithmSpec,
    PPOParams,
    QMIXParams,
    ValueDecompositionParams,
    VDNParams,
)
from rl_platform.config.base import ConfigError, ConfigModel
from rl_platform.config.experiment import ExperimentConfig, PluginExperimentConfig
from rl_platform.config.features import (
    SEED_SEARCH_SPACE,
    ConstraintSpec,
    CuriositySpec,
    HierarchySpec,
    MetaSpec,
    SafetySpec,
    TuneSpec,
)
from rl_platform.config.loading import apply_overrides, load_experiment, validate_experiment
from rl_platform.config.messages import format_validation_error
from rl_platform.config.sections import (
    EVALUATION_PREFIX,
    CheckpointSpec,
    CoordinationSpec,
    CurriculumSpec,
    EnvSpec,
    EvaluationSpec,
    NetworkSpec,
    PromotionRule,
    ResourcesSpec,
    RewardsSpec,
    ShapingSpec,
    StopSpec,
)
from rl_platform.config.tracking import MLflowSpec, TrackingSpec, WandbSpec

__all__ = [
    "ALGORITHM_SPECS",
    "EVALUATION_PREFIX",
    "SEED_SEARCH_SPACE",
    "AlgorithmParams",
    "AlgorithmSection",
    "AlgorithmSpec",
    "CheckpointSpec",
    "ConfigError",
    "ConfigModel",
    "ConstraintSpec",
    "CoordinationSpec",
    "CuriositySpec",
    "CurriculumSpec",
    "EnvSpec",
    "EvaluationSpec",
    "ExperimentConfig",
    "HierarchySpec",
    "IPPOParams",
    "IQLParams",
    "MADDPGParams",
    "MAPPOParams",
    "MLflowSpec",
    "MetaSpec",
    "NetworkSpec",
    "PPOParams",
    "PluginAlgorithmSpec",
    "PluginExperimentConfig",
    "PromotionRule",
    "QMIXParams",
    "ResourcesSpec",
    "RewardsSpec",
    "SafetySpec",
    "ShapingSpec",
    "StopSpec",
    "TrackingSpec",
    "TuneSpec",
    "VDNParams",
    "ValueDecompositionParams",
    "WandbSpec",
    "apply_overrides",
    "experiment_json_schema",
    "format_validation_error",
    "load_experiment",
    "validate_experiment",
]


def experiment_json_schema() -> dict[str, Any]:
    """JSON Schema of the experiment YAML, for editors (yaml-language-server)."""
    schema = ExperimentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rl_platform experiment"
    return schema
