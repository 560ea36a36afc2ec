"""The experiment's optional sections, as pydantic models.

Safety, hierarchy, curiosity, meta and the sweep (``tune``); the features that run them
live in their own modules.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from rl_platform.config.base import ConfigModel


class ConstraintSpec(ConfigModel):
    """One constraint of the env to enforce, and its threshold (units: the env's)."""

    name: str = Field(description="A constraint the env declares (`BatchedCore.constraints`).")
    limit: float = Field(allow_inf_nan=False, description="Threshold, in the constraint's units.")


class SafetySpec(ConfigModel):
    """What the shield enforces and what it does instead (the experiment's ``safety``)."""

    constraints: list[ConstraintSpec] = Field(description="Constraints to enforce.")
    fallback: str | None = Field(
        default=None,
        description=(
            "A baseline of the env whose action replaces a violating one; 'default' = the "
            "env's default action; None = the env's first baseline."
        ),
    )
    penalty: float = Field(
        default=0.0, ge=0.0, description="Reward subtracted per intervention (training)."
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _distinct_names(self) -> SafetySpec:
        names = [c.name for c in self.constraints]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"constraint(s) listed twice: {', '.join(repeated)}")
        return self


class HierarchySpec(ConfigModel):
    """Hierarchical control (the experiment's ``hierarchy``).

    A meta-controller picks one of the env's strategies (``BatchedCore.strategies``) for
    each agent every ``every`` steps; low-level policies act under the chosen strategy.
    See :mod:`rl_platform.advanced.hierarchical`.
    """

    every: PositiveInt = Field(default=10, description="Steps between strategy choices (K).")
    strategies: list[str] | None = Field(
        default=None, description="The env's strategies offered to the meta-controller; null = all."
    )
    low_level: Literal["strategies", "learned"] = Field(
        default="strategies",
        description=(
            "strategies: the env's parameterized strategy policies act; learned: a trained "
            "low-level policy acts on its observation plus the chosen strategy."
        ),
    )


class CuriositySpec(ConfigModel):
    """An Intrinsic Curiosity Module (the experiment's ``curiosity``).

    Forward and inverse models over a learned feature encoder; the forward model's error
    is an intrinsic reward added, times ``weight``, to the extrinsic reward before the
    advantages are computed. See :mod:`rl_platform.advanced.curiosity`.
    """

    weight: NonNegativeFloat = Field(default=0.05, description="Scale of the intrinsic reward.")
    forward_loss_weight: float = Field(
        default=0.2, ge=0.0, le=1.0, description="ICM loss = b * forward + (1 - b) * inverse."
    )
    feature_dim: PositiveInt = Field(default=32, description="Size of the learned features.")
    hidden_sizes: tuple[PositiveInt, ...] = Field(
        default=(64,), description="Hidden layers of the encoder, forward and inverse models."
    )
    lr: PositiveFloat = Field(default=1e-3, description="Learning rate of the ICM.")


class MetaSpec(ConfigModel):
    """Meta-learning over a distribution of tasks (the experiment's ``meta``).

    Each meta-step trains ``inner_iterations`` iterations on one task drawn (seeded by
    the experiment's seed) from ``tasks``, then moves the meta-weights toward the
    result (Reptile) or along the last inner update (first-order MAML). Tasks are the
    env's task levels or named variants. See :mod:`rl_platform.advanced.meta`.
    """

    method: Literal["reptile", "fomaml"] = Field(
        default="reptile",
        description="reptile: move the meta-weights toward the task-adapted weights; fomaml: "
        "first-order MAML, move them along the last inner iteration's update.",
    )
    tasks: list[str] = Field(
        min_length=1, description="Training tasks: the env's task levels or named variants."
    )
    held_out: list[str] = Field(
        default_factory=list,
        description="Tasks never trained on in meta-training, for `rlp adapt`.",
    )
    inner_iterations: PositiveInt = Field(
        default=2, description="Training iterations on one task per meta-step."
    )
    meta_lr: float = Field(default=0.5, gt=0.0, le=1.0, description="Outer step size.")


SEED_SEARCH_SPACE: dict[str, dict[str, list[Any]]] = {
    "lr": {"loguniform": [1.0e-5, 1.0e-2]},
    "gamma": {"uniform": [0.9, 0.999]},
    "exploration": {"uniform": [0.01, 0.3]},
    "batch_size": {"choice": [32, 64, 128, 256, 512]},
    "network": {"choice": [[64, 64], [128, 128], [256, 256]]},
    "replay_buffer": {"lograndint": [10_000, 1_000_000]},
}
"""The seed's search space, used when ``tune.search_space`` is empty.

Its names are resolved per algorithm (``rl_platform.tuning.SEMANTIC_PARAMS``):
``exploration`` is PPO's entropy coefficient, the value-based algorithms' (final)
epsilon and MADDPG's (final) noise; ``batch_size`` the minibatch of PPO-style algorithms
and the train batch of the replay-based ones; ``replay_buffer`` only exists where an
algorithm has a replay buffer. A name an algorithm lacks is skipped.
"""


class TuneSpec(ConfigModel):
    """The sweep section of a sweep YAML (used by `rlp tune`, ignored by `rlp train`).

    Each trial is the experiment with the trial's values set at ``search_space``'s key
    paths; Tune runs the trials on the Ray cluster, Optuna suggests the values and
    keeps the study, ASHA stops the weak trials early.
    """

    search_space: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Experiment key path (as for --set, e.g. algorithm.hyperparams.lr) or "
        "one of the seed's names (lr, gamma, exploration, batch_size, network, "
        "replay_buffer) -> one distribution: {uniform: [low, high]}, {loguniform: [low, "
        "high]}, {quniform: [low, high, q]}, {randint: [low, high]} (both ends included), "
        "{lograndint: [low, high]}, {qrandint: [low, high, q]} or {choice: [v1, v2, ...]}. "
        "Empty: the seed's space (lr, gamma, exploration, batch size, network, replay "
        "buffer), skipping what the algorithm does not have.",
    )
    num_samples: PositiveInt = Field(default=10, description="Trials in all.")
    max_concurrent_trials: PositiveInt | None = Field(
        default=None,
        description="Trials running at once; null = as many as the cluster's CPUs/GPUs fit.",
    )
    searcher: Literal["optuna", "random"] = Field(
        default="optuna",
        description="optuna: Optuna's TPE; random: uniform random sampling (for comparison). "
        "Both keep an Optuna study.",
    )
    startup_trials: PositiveInt = Field(
        default=10, description="TPE: trials sampled at random before TPE's model is used."
    )
    scheduler: Literal["asha", "none"] = Field(
        default="asha",
        description="asha: stop weak trials early (needs stop.training_iteration); none: every "
        "trial runs to its stop criterion.",
    )
    grace_period: PositiveInt = Field(
        default=1, description="ASHA: iterations every trial runs before it can be stopped."
    )
    reduction_factor: float = Field(
        default=3.0, gt=1, description="ASHA: 1/reduction_factor of the trials go on per rung."
    )
    metric: str = Field(
        default="env_runners/episode_return_mean", description="Result key the search optimizes."
    )
    mode: Literal["max", "min"] = "max"
    trial_resources: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of `resources` that trials use instead of the experiment's (e.g. "
        "{num_env_runners: 0} so that more trials run at once); best.yaml keeps the "
        "experiment's own. A trial reserves what its algorithm asks for with them.",
    )
    storage: str | None = Field(
        default=None,
        description="Optuna study storage: null = the journal file optuna.journal in the sweep "
        "directory (safe for several processes on one machine); a file path = a journal file "
        "there; or an RDB URL (sqlite:///studies.db, postgresql://user@host/db).",
    )
    study_name: str | None = Field(
        default=None, description="Optuna study name; null = <name>-<sweep directory name>."
    )
