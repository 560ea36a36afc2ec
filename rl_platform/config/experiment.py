"""The whole experiment YAML as one frozen pydantic model, :class:`ExperimentConfig`."""

from __future__ import annotations

import yaml
from pydantic import Field, NonNegativeInt

from rl_platform.config.algorithms import AlgorithmSection, PluginAlgorithmSpec
from rl_platform.config.base import ConfigModel
from rl_platform.config.features import (
    CuriositySpec,
    HierarchySpec,
    MetaSpec,
    SafetySpec,
    TuneSpec,
)
from rl_platform.config.monitoring import MonitoringSpec
from rl_platform.config.sections import (
    CheckpointSpec,
    CurriculumSpec,
    EnvSpec,
    EvaluationSpec,
    ResourcesSpec,
    RewardsSpec,
    StopSpec,
)
from rl_platform.config.tracking import TrackingSpec


class ExperimentConfig(ConfigModel):
    """One experiment: an env, an algorithm, and how to run, stop and checkpoint."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=100,
        description="Run name; runs go to runs/<name>/<timestamp>/.",
    )
    seed: NonNegativeInt = 0
    storage: str | None = Field(
        default=None,
        description=(
            "Parent folder of run directories when --output is not given (default: runs). "
            "For `rlp submit`: a path every node of the cluster sees (NFS, EFS, a PVC)."
        ),
    )
    env: EnvSpec
    algorithm: AlgorithmSection
    rewards: RewardsSpec = Field(default_factory=RewardsSpec)
    curriculum: CurriculumSpec | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    stop: StopSpec = Field(default_factory=lambda: StopSpec(training_iteration=50))
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec,
        description="Anomaly rules watched during training; `stop_on` kinds end the run.",
    )
    safety: SafetySpec | None = Field(
        default=None,
        description=(
            "A constraint shield on every action in training (with an optional penalty), "
            "and in `rlp evaluate --shield` and serving."
        ),
    )
    hierarchy: HierarchySpec | None = Field(
        default=None, description="A meta-controller choosing each agent's strategy every K steps."
    )
    curiosity: CuriositySpec | None = Field(
        default=None, description="An intrinsic curiosity reward (ICM) for exploration."
    )
    meta: MetaSpec | None = Field(
        default=None, description="Meta-training over tasks, for fast adaptation to new ones."
    )
    initial_policies: str | None = Field(
        default=None,
        description=(
            "A policies/ export (or the checkpoint holding one) whose module weights the "
            "run starts from, loaded with weights_only (e.g. meta-trained weights, as "
            "`rlp adapt` does); null = fresh weights."
        ),
    )
    tracking: TrackingSpec | None = Field(
        default=None,
        description="Also log each trial's config and metrics to Weights & Biases or MLflow.",
    )
    tune: TuneSpec | None = None

    def to_yaml(self) -> str:
        """The resolved config as YAML text that `load_experiment` reads back unchanged."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


class PluginExperimentConfig(ExperimentConfig):
    """An experiment with an algorithm registered at run time (no spec of its own).

    Its hyperparameters are a mapping until resolution checks them against the
    registered module's ``Hyperparams`` (see :mod:`rl_platform.config.loading`).
    """

    algorithm: PluginAlgorithmSpec
