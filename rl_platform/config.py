"""The experiment YAML as pydantic models, and loading it with overrides.

An experiment file is validated twice: first against the models below (shape, types,
ranges, unknown keys), then against what the registry knows about the chosen env and
algorithm (the env's own config model, its reward components and task levels, the
algorithm's hyperparameters). Both stages raise :class:`ConfigError`, whose message names
the file, the field path, the value and what was expected.

The loaded :class:`ExperimentConfig` is frozen and *resolved*: every default of the env
and the algorithm is filled in, so dumping it gives a file that re-runs the experiment
exactly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from rl_platform.monitoring import MonitoringSpec  # pydantic only at import: no cycle
from rl_platform.registry import PETTINGZOO_PREFIX
from rl_platform.trust import UntrustedModuleError, check_env_factory
from rl_platform.yaml_model import YamlModel


class ConfigError(ValueError):
    """An experiment file, dict or override that cannot be used.

    The message is meant for people: one paragraph naming the source, the field path,
    the offending value and what was expected.
    """


class _Model(YamlModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvSpec(_Model):
    """Which environment to train on and its constructor arguments."""

    id: str = Field(
        description="A registered env id (`rlp envs list`), or pettingzoo:<module>:<factory> "
        "for a PettingZoo env: a module of pettingzoo.*, mpe2.* or vmas.* with factory env, "
        "parallel_env or raw_env, or a module trusted outside the YAML ($RLP_TRUSTED_MODULES "
        "or --trust-module); nothing else is imported."
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Arguments of the env, checked against its model."
    )

    @field_validator("id")
    @classmethod
    def _allowed_module(cls, env_id: str) -> str:
        if env_id.startswith(PETTINGZOO_PREFIX):
            try:
                check_env_factory(env_id, PETTINGZOO_PREFIX)
            except UntrustedModuleError as err:
                raise ValueError(err.reason) from None
        return env_id


class NetworkSpec(_Model):
    """The policy and value networks' hidden layers."""

    hidden_sizes: tuple[PositiveInt, ...] = Field(
        default=(64, 64), min_length=1, description="Width of each hidden layer."
    )
    activation: Literal["tanh", "relu", "silu", "elu"] = "tanh"


class AlgorithmSpec(_Model):
    """Which algorithm trains the agents, and how policies map to agents."""

    id: str = Field(description="A registered algorithm id (`rlp envs list` shows them too).")
    shared_policy: bool = Field(
        default=True,
        description="One module for all agents (parameter sharing) or one module per agent.",
    )
    hyperparams: dict[str, Any] = Field(
        default_factory=dict, description="Algorithm hyperparameters, checked per algorithm."
    )
    network: NetworkSpec = Field(default_factory=NetworkSpec)


class ShapingSpec(_Model):
    """Potential-based shaping: each reward gets ``weight * (gamma * Phi(s') - Phi(s))``."""

    potential: str = Field(description="A potential the env declares (`rlp envs show <id>`).")
    weight: float = Field(default=1.0, description="Scale of the shaping term.")
    gamma: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Discount of the shaping term; null = the algorithm's gamma, which is "
        "what keeps the optimal policy unchanged.",
    )


class CoordinationSpec(_Model):
    """A bonus for agents whose actions agree (or, with ``prefer: diverse``, differ)."""

    weight: NonNegativeFloat = Field(
        default=0.1, description="Bonus per unit of mean cosine similarity (the seed's 0.1)."
    )
    prefer: Literal["similar", "diverse"] = Field(
        default="similar",
        description="similar: reward agreeing with the others; diverse: penalize it.",
    )


class RewardsSpec(_Model):
    """How each agent's reward is made from the env's reward components.

    The env's weighted components make the task reward; ``team`` mixes it with the agents'
    mean; ``difference`` replaces it with each agent's own contribution to the team reward;
    ``shaping`` and ``coordination`` add terms on top. Every part is logged separately.
    """

    weights: dict[str, float] = Field(
        default_factory=dict,
        description="Component name -> weight; components left out keep the env's default.",
    )
    team: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of each agent's reward replaced by the mean over agents: 0 keeps "
        "individual rewards, 1 makes every agent maximize the team's (cooperative training).",
    )
    difference: bool = Field(
        default=False,
        description="Difference rewards: an agent gets the team reward (mean over agents) "
        "minus the team reward had it taken the env's default action.",
    )
    shaping: ShapingSpec | None = None
    coordination: CoordinationSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RewardsSpec:
        for name, weight in self.weights.items():
            if not math.isfinite(weight):
                raise ValueError(f"weight of {name!r} must be a finite number, got {weight}")
        if self.difference and self.team:
            raise ValueError(
                "team and difference cannot be combined: a difference reward already "
                "measures each agent against the team reward (set team: 0)"
            )
        return self


class PromotionRule(_Model):
    """When to advance to the next curriculum level (and, optionally, to fall back)."""

    min_episodes: PositiveInt = Field(default=100, description="Episodes played at a level first.")
    window: PositiveInt = Field(default=50, description="Recent episodes averaged.")
    threshold: float = Field(
        default=0.8, ge=0.0, le=1.0, description="Normalized score to pass, in [0, 1]."
    )
    demote_below: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Go back one level when the window's normalized score falls below this "
        "(after min_episodes at the level); null = never demote.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PromotionRule:
        if self.window > self.min_episodes:
            raise ValueError(
                f"window ({self.window}) must not exceed min_episodes ({self.min_episodes}): "
                "the window averages episodes played at the current level"
            )
        if self.demote_below is not None and self.demote_below >= self.threshold:
            raise ValueError(
                f"demote_below ({self.demote_below}) must be below threshold "
                f"({self.threshold}), or a run would bounce between levels"
            )
        return self


class CurriculumSpec(_Model):
    """Task levels to move through, by performance (``promote``) or by ``schedule``.

    Scores are normalized per env and level: 0 is a random policy's mean episode score,
    1 the best of the env's hand-written baselines (or ``score_range`` where given).
    """

    levels: list[str] = Field(min_length=1, description="Levels in order; the env declares them.")
    promote: PromotionRule = Field(default_factory=PromotionRule)
    schedule: dict[str, NonNegativeInt] | None = Field(
        default=None,
        description="Level -> training iterations done before moving to it, instead of "
        "promotion (e.g. {easy: 0, medium: 20}: medium from the 21st iteration on); the "
        "first level must start at 0.",
    )
    score_range: dict[str, tuple[float, float]] | None = Field(
        default=None,
        description="Level -> (score of 0, score of 1) to normalize episode scores with, "
        "instead of random and the best baseline (needed for envs without baselines).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CurriculumSpec:
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"levels {self.levels} repeat a level")
        if self.schedule is not None:
            unknown = [level for level in self.schedule if level not in self.levels]
            if unknown:
                raise ValueError(f"schedule names levels not in levels: {unknown}")
            starts = [self.schedule[level] for level in self.levels if level in self.schedule]
            if self.levels[0] not in self.schedule or self.schedule[self.levels[0]] != 0:
                raise ValueError(f"schedule must start the first level {self.levels[0]!r} at 0")
            if starts != sorted(starts) or len(set(starts)) != len(starts):
                raise ValueError("schedule iterations must increase along levels")
        for level, (low, high) in (self.score_range or {}).items():
            if level not in self.levels:
                raise ValueError(f"score_range names level {level!r}, not in levels")
            if not (math.isfinite(low) and math.isfinite(high) and high > low):
                raise ValueError(f"score_range of {level!r} needs finite low < high")
        return self


class ResourcesSpec(_Model):
    """How much of the Ray cluster one run uses, and fault tolerance."""

    num_env_runners: NonNegativeInt = Field(
        default=1, description="Remote sampling workers; 0 samples in the driver's process."
    )
    num_envs_per_env_runner: PositiveInt = Field(
        default=1, description="Env copies per runner (B of the batched sampler)."
    )
    sampler: Literal["stock", "batched"] = Field(
        default="stock",
        description=(
            "`batched`: step the env's batched core over all copies and agents at once "
            "(PPO, MAPPO, IPPO; falls back to `stock` with a log line where unsupported)."
        ),
    )
    num_cpus_per_env_runner: PositiveFloat = 1
    num_learners: NonNegativeInt = Field(
        default=0, description="Remote learner workers; 0 trains in the algorithm's process."
    )
    num_gpus_per_learner: NonNegativeFloat = 0
    rollout_fragment_length: PositiveInt | Literal["auto"] = "auto"
    max_env_runner_restarts: NonNegativeInt = Field(
        default=100, description="Crashed env runners are restarted this many times in all."
    )
    max_failures: NonNegativeInt = Field(
        default=0, description="Times Tune restarts the whole trial from its last checkpoint."
    )


class StopSpec(_Model):
    """When training ends: the first criterion reached stops it."""

    training_iteration: PositiveInt | None = None
    env_steps: PositiveInt | None = Field(default=None, description="Env steps sampled in all.")
    episode_return_mean: float | None = Field(
        default=None, description="Mean episode return (summed over agents) to reach."
    )
    time_total_s: PositiveFloat | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> StopSpec:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError(
                "no stop criterion set: give one of training_iteration, env_steps, "
                "episode_return_mean, time_total_s"
            )
        return self


class CheckpointSpec(_Model):
    """How often to checkpoint, how many to keep and how to rank them."""

    every: NonNegativeInt = Field(
        default=10, description="Checkpoint every N iterations; 0 = only at the end."
    )
    keep: PositiveInt | None = Field(default=3, description="Best checkpoints kept; null = all.")
    metric: str = Field(
        default="env_runners/episode_return_mean", description="Result key that ranks them."
    )
    mode: Literal["max", "min"] = "max"


class ConstraintSpec(_Model):
    """One constraint of the env to enforce, and its threshold (units: the env's)."""

    name: str = Field(description="A constraint the env declares (`BatchedCore.constraints`).")
    limit: float = Field(allow_inf_nan=False, description="Threshold, in the constraint's units.")


class SafetySpec(_Model):
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


class HierarchySpec(_Model):
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


class CuriositySpec(_Model):
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


class MetaSpec(_Model):
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


EVALUATION_PREFIX = "evaluation/"


class EvaluationSpec(_Model):
    """Greedy evaluation during training (a light subset of `rlp evaluate`).

    Every `every` iterations the policy plays `episodes` episodes on held-out env seeds at
    the current level; results appear under `evaluation/` (score, normalized,
    coordination, robustness) and, unless `checkpoint.metric` is set, rank checkpoints.
    """

    every: NonNegativeInt = Field(default=0, description="Evaluate every N iterations; 0 = off.")
    episodes: PositiveInt = Field(default=10, description="Episodes per evaluation.")


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


class TuneSpec(_Model):
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


class ExperimentConfig(_Model):
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
    algorithm: AlgorithmSpec
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
    tune: TuneSpec | None = None

    def to_yaml(self) -> str:
        """The resolved config as YAML text that `load_experiment` reads back unchanged."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------- loading


def load_experiment(
    source: str | Path | dict[str, Any] | ExperimentConfig,
    overrides: list[str] | dict[str, Any] | None = None,
) -> ExperimentConfig:
    """Load, override and fully validate an experiment.

    Args:
        source: a YAML path, a dict with the YAML's content, or a config to re-validate.
        overrides: `key.path=value` strings (values parsed as YAML) or a flat dict of
            `key.path -> value`, applied before validation.

    Returns:
        The resolved, frozen config (env and algorithm defaults filled in).

    Raises:
        ConfigError: the source cannot be read or any field is invalid.
    """
    if isinstance(source, ExperimentConfig):
        where, raw = "<config>", source.model_dump(mode="json")
    elif isinstance(source, dict):
        where, raw = "<dict>", source
    else:
        where, raw = str(source), _read_yaml(Path(source))
    raw = apply_overrides(raw, overrides or [], where)
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(where, err, ExperimentConfig)) from None
    return _resolve_against_registry(config, where)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}.") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of experiment fields (name, env, algorithm, ...), "
            f"got {type(data).__name__}."
        )
    return data


def apply_overrides(
    raw: dict[str, Any], overrides: list[str] | dict[str, Any], where: str = "<config>"
) -> dict[str, Any]:
    """Return a deep copy of `raw` with `key.path=value` overrides applied.

    Values in strings are parsed as YAML, so `--set algorithm.network.hidden_sizes=[32,32]`
    and `--set algorithm.hyperparams.lr=1e-3` do what they look like.
    """
    pairs: list[tuple[str, Any]] = []
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(
                    f"{where}: override {item!r} is not of the form key.path=value "
                    "(e.g. --set stop.training_iteration=5)."
                )
            try:
                value = yaml.safe_load(text) if text.strip() else ""
            except yaml.YAMLError:
                value = text
            pairs.append((key.strip(), value))

    result = _deep_copy(raw)
    for key, value in pairs:
        parts = key.split(".")
        if any(not p for p in parts):
            raise ConfigError(f"{where}: override key {key!r} has an empty part.")
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"{where}: override {key}={value!r}: {prefix} holds {child!r}, "
                    f"not a mapping with key {parts[depth + 1]!r}."
                )
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _resolve_against_registry(config: ExperimentConfig, where: str) -> ExperimentConfig:
    """Check the env and algorithm parts against their registered models; fill defaults."""
    from rl_platform import registry

    env_entry = registry.get_env(config.env.id)
    if env_entry is None:
        raise ConfigError(
            f"{where}: env.id = {config.env.id!r} is not a registered env; "
            f"expected one of: {', '.join(sorted(registry.ENVS))}, "
            "or pettingzoo:<module>:<factory> for an allow-listed PettingZoo env."
        )
    algo_entry = registry.ALGORITHMS.get(config.algorithm.id)
    if algo_entry is None:
        raise ConfigError(
            f"{where}: algorithm.id = {config.algorithm.id!r} is not a registered algorithm; "
            f"expected one of: {', '.join(sorted(registry.ALGORITHMS))}."
        )

    env_cls = env_entry.load()
    bound = env_entry.bound_config
    env_config = _validate_part(
        env_cls.config_model, {**config.env.config, **bound}, where, ("env", "config")
    )
    if hasattr(env_cls, "probe_config"):
        try:
            env_cls.probe_config({**config.env.config, **bound})
        except Exception as err:  # noqa: BLE001 (any failure to build is a config error)
            raise ConfigError(
                f"{where}: env {config.env.id!r} cannot be built with env.config = "
                f"{config.env.config!r}: {type(err).__name__}: {err}"
            ) from None
    env_config = {k: v for k, v in env_config.items() if k not in bound}
    components = tuple(env_cls.reward_components)
    for name in config.rewards.weights:
        if name not in components:
            raise ConfigError(
                f"{where}: rewards.weights.{name}: env {config.env.id!r} has no reward "
                f"component {name!r}; expected one of: {', '.join(components)}."
            )
    _check_curriculum(config, env_cls, where)
    _check_advanced(config, env_cls, where)
    if config.initial_policies is not None:
        from rl_platform.warm_start import check_initial_policies

        try:
            check_initial_policies(config.initial_policies, config.env.id)
        except ValueError as err:
            raise ConfigError(f"{where}: initial_policies: {err}") from None
    if config.safety is not None:
        from rl_platform.safety import check_safety

        try:
            check_safety(config.safety, env_cls)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}.") from None

    hyperparams = _validate_part(
        algo_entry.load().Hyperparams,
        config.algorithm.hyperparams,
        where,
        ("algorithm", "hyperparams"),
    )
    rewards = _resolve_rewards(config, env_cls, hyperparams, where)
    return config.model_copy(
        update={
            "env": config.env.model_copy(update={"config": env_config}),
            "algorithm": config.algorithm.model_copy(update={"hyperparams": hyperparams}),
            "rewards": rewards,
            "checkpoint": _resolve_checkpoint_metric(config, env_cls, where),
        }
    )


def _check_advanced(config: ExperimentConfig, env_cls: type, where: str) -> None:
    """Refuse hierarchy, curiosity and meta settings the env or algorithm cannot run."""
    import importlib

    for field, module in (
        ("hierarchy", "hierarchical"),
        ("curiosity", "curiosity"),
        ("meta", "meta"),
    ):
        if getattr(config, field) is None:
            continue
        check = importlib.import_module(f"rl_platform.advanced.{module}").check
        try:
            check(config, env_cls)
        except ValueError as err:
            raise ConfigError(f"{where}: {field}: {err}") from None


def _resolve_checkpoint_metric(
    config: ExperimentConfig, env_cls: type, where: str
) -> CheckpointSpec:
    """Rank checkpoints by the evaluation during training when it is on and no metric is set.

    Under a curriculum, scores of different levels differ, so the normalized score ranks.
    """
    ckpt, evaluation = config.checkpoint, config.evaluation
    if evaluation.every == 0:
        if ckpt.metric.startswith(EVALUATION_PREFIX):
            raise ConfigError(
                f"{where}: checkpoint.metric = {ckpt.metric!r} needs the evaluation during "
                "training: set evaluation.every (e.g. 5)."
            )
        return ckpt
    if not hasattr(env_cls, "core_cls"):
        raise ConfigError(
            f"{where}: evaluation.every: env {config.env.id!r} has no batched core, so "
            "it cannot be evaluated during training; set evaluation.every to 0."
        )
    if "metric" in ckpt.model_fields_set:
        return ckpt
    metric = "normalized" if config.curriculum is not None else "score"
    return ckpt.model_copy(update={"metric": f"{EVALUATION_PREFIX}{metric}", "mode": "max"})


def _check_curriculum(config: ExperimentConfig, env_cls: type, where: str) -> None:
    curriculum = config.curriculum
    if curriculum is None:
        return
    levels = tuple(env_cls.task_levels)
    if not levels:
        raise ConfigError(
            f"{where}: curriculum: env {config.env.id!r} declares no task levels, so it has "
            "no curriculum; remove the curriculum section."
        )
    for i, level in enumerate(curriculum.levels):
        if level not in levels:
            raise ConfigError(
                f"{where}: curriculum.levels[{i}] = {level!r}: env {config.env.id!r} has "
                f"no task level {level!r}; expected levels from: {', '.join(levels)}."
            )
    if curriculum.schedule is None and not getattr(env_cls, "baselines", ()):
        missing = [
            level for level in curriculum.levels if level not in (curriculum.score_range or {})
        ]
        if missing:
            raise ConfigError(
                f"{where}: curriculum.score_range: env {config.env.id!r} has no baselines to "
                f"normalize scores with; give score_range for levels {missing} "
                "(level: [score meaning 0, score meaning 1])."
            )


def _resolve_rewards(
    config: ExperimentConfig, env_cls: type, hyperparams: dict[str, Any], where: str
) -> RewardsSpec:
    """Check the reward settings against the env; fill the shaping discount in."""
    rewards = config.rewards
    env_id = config.env.id
    if rewards.difference and not callable(getattr(env_cls, "counterfactual_rewards", None)):
        raise ConfigError(
            f"{where}: rewards.difference: env {env_id!r} has no counterfactual hook "
            "(counterfactual_rewards), so difference rewards cannot be computed for it."
        )
    if rewards.shaping is None:
        return rewards
    potentials = tuple(getattr(env_cls, "potentials", ()))
    if rewards.shaping.potential not in potentials:
        raise ConfigError(
            f"{where}: rewards.shaping.potential = {rewards.shaping.potential!r}: env "
            f"{env_id!r} declares no such potential; expected one of: "
            f"{', '.join(potentials) or '(none: this env has no potentials)'}."
        )
    if rewards.shaping.gamma is not None:
        return rewards
    gamma = float(hyperparams.get("gamma", 0.99))
    shaping = rewards.shaping.model_copy(update={"gamma": gamma})
    return rewards.model_copy(update={"shaping": shaping})


def _validate_part(
    model: type[BaseModel], data: dict[str, Any], where: str, prefix: tuple[str, ...]
) -> dict[str, Any]:
    try:
        return model.model_validate(data).model_dump(mode="json")
    except ValidationError as err:
        raise ConfigError(format_validation_error(where, err, model, prefix)) from None


# --------------------------------------------------------------------------- messages


def format_validation_error(
    where: str,
    err: ValidationError,
    model: type[BaseModel],
    prefix: tuple[str, ...] = (),
    what: str = "experiment config",
) -> str:
    """Turn a pydantic error into one paragraph: source, field path, value, expectation."""
    problems = []
    for item in err.errors(include_url=False):
        loc = tuple(str(p) for p in item["loc"])
        # Union members add their type name to the path; keep only real field names.
        loc = tuple(p for p in loc if not _is_type_tag(p))
        path = _dotted(prefix + loc) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            expected = (
                f"unknown key; expected one of: {', '.join(allowed)}"
                if allowed
                else ("unknown key")
            )
            problems.append(f"{path}: {expected}")
        elif kind == "missing":
            problems.append(f"{path}: required field is missing")
        else:
            value = item.get("input")
            problems.append(f"{path} = {_short(value)}: {_expectation(item)}")
    return f"{where}: invalid {what}: " + "; ".join(problems) + "."


def _is_type_tag(part: str) -> bool:
    return part.startswith(("literal[", "function-")) or part in {
        "int",
        "float",
        "str",
        "bool",
        "dict",
        "list",
        "tuple",
        "constrained-int",
        "constrained-float",
        "is-instance",
        "none",
    }


def _dotted(parts: tuple[str, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expectation(item: dict[str, Any]) -> str:
    msg = item["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("Input should be "):
        return "expected " + msg[len("Input should be ") :]
    if msg.startswith("Input should "):
        return "expected the value to " + msg[len("Input should ") :]
    return msg


def _allowed_keys(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The field names of the sub-model at `loc`, or [] when `loc` is not a model."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_of(fields[part].annotation)
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def experiment_json_schema() -> dict[str, Any]:
    """JSON Schema of the experiment YAML, for editors (yaml-language-server)."""
    schema = ExperimentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rl_platform experiment"
    return schema
