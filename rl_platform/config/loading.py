"""Loading an experiment: YAML, overrides, validation, resolution against the registry.

An experiment file is validated twice, first against the models (no torch, no Ray), then
against what the registry knows about the chosen env; both stages raise
:class:`ConfigError` naming the file, the field path, the value and what was expected.
The loaded :class:`ExperimentConfig` is frozen and resolved (every default filled in). An
algorithm registered at run time without a spec is read as a
:class:`PluginExperimentConfig`. Details: docs/experiments.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rl_platform import registry
from rl_platform.config.algorithms import ALGORITHM_SPECS
from rl_platform.config.base import ConfigError
from rl_platform.config.experiment import ExperimentConfig, PluginExperimentConfig
from rl_platform.config.groups import GroupError, resolve_groups
from rl_platform.config.messages import format_validation_error
from rl_platform.config.sections import EVALUATION_PREFIX, CheckpointSpec, RewardsSpec

Source = str | Path | dict[str, Any] | ExperimentConfig


def load_experiment(
    source: Source,
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
    config, where = _validate(source, overrides)
    return _resolve_against_registry(config, where)


def validate_experiment(
    source: Source,
    overrides: list[str] | dict[str, Any] | None = None,
) -> ExperimentConfig:
    """Load, override and validate an experiment against the models only (no resolution).

    Imports neither torch nor Ray nor the env: what `rlp train` checks before anything
    heavy is imported. :func:`load_experiment` does this first, then resolves.

    Raises:
        ConfigError: the source cannot be read or a field is invalid.
    """
    return _validate(source, overrides)[0]


def _validate(
    source: Source, overrides: list[str] | dict[str, Any] | None
) -> tuple[ExperimentConfig, str]:
    if isinstance(source, ExperimentConfig):
        where, raw = "<config>", source.model_dump(mode="json")
    elif isinstance(source, dict):
        where, raw = "<dict>", source
    else:
        where, raw = str(source), _read_yaml(Path(source))
    raw = apply_overrides(raw, overrides or [], where)
    model = _experiment_model(raw)
    try:
        return model.model_validate(raw), where
    except ValidationError as err:
        raise ConfigError(format_validation_error(where, err, model)) from None


def _experiment_model(raw: dict[str, Any]) -> type[ExperimentConfig]:
    """ExperimentConfig, or its plugin form for a run-time registered algorithm id."""
    algorithm = raw.get("algorithm")
    algo_id = algorithm.get("id") if isinstance(algorithm, dict) else None
    if (
        isinstance(algo_id, str)
        and algo_id not in ALGORITHM_SPECS
        and algo_id in registry.ALGORITHMS
    ):
        return PluginExperimentConfig
    return ExperimentConfig


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
    env_entry = registry.get_env(config.env.id)
    if env_entry is None:
        raise ConfigError(
            f"{where}: env.id = {config.env.id!r} is not a registered env; "
            f"expected one of: {', '.join(registry.env_ids())}, "
            "pettingzoo:<module>:<factory> for an allow-listed PettingZoo env, "
            "or vmas:<scenario> for a VMAS scenario."
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
    _check_features(config, env_cls, where)
    _check_groups(config, env_cls, {**env_config, **bound}, where)

    algorithm = config.algorithm
    if isinstance(config, PluginExperimentConfig):  # checked by the registered module
        hyperparams = _validate_part(
            algo_entry.load().Hyperparams,
            algorithm.hyperparams,
            where,
            ("algorithm", "hyperparams"),
        )
        algorithm = algorithm.model_copy(update={"hyperparams": hyperparams})
    rewards = _resolve_rewards(config, env_cls, algorithm.hyperparams, where)
    return config.model_copy(
        update={
            "env": config.env.model_copy(update={"config": env_config}),
            "algorithm": algorithm,
            "rewards": rewards,
            "checkpoint": _resolve_checkpoint_metric(config, env_cls, where),
        }
    )


def _check_groups(
    config: ExperimentConfig, env_cls: type, env_config: dict[str, Any], where: str
) -> None:
    """Refuse ``algorithm.groups`` that do not put each of the env's agents in one group."""
    groups = config.algorithm.groups
    if not groups:
        return
    if config.hierarchy is not None:
        raise ConfigError(
            f"{where}: algorithm.groups cannot be combined with a hierarchy section (its "
            "meta-controllers have modules of their own); use algorithm.shared_policy."
        )
    env = env_cls(dict(env_config))
    try:
        agents = list(env.possible_agents)
        spaces = {a: (env.observation_spaces[a], env.action_spaces[a]) for a in agents}
    finally:
        close = getattr(env, "close", None)
        if callable(close):
            close()
    try:
        mapping = resolve_groups(groups, agents)
    except GroupError as err:
        raise ConfigError(f"{where}: {err}") from None
    first: dict[str, str] = {}
    for agent, group in mapping.items():
        other = first.setdefault(group, agent)
        if spaces[agent] != spaces[other]:
            raise ConfigError(
                f"{where}: algorithm.groups.{group}: agents {other} and {agent} of env "
                f"{config.env.id!r} have different observation or action spaces, so they "
                "cannot share a module; put them in different groups."
            )


def _check_features(config: ExperimentConfig, env_cls: type, where: str) -> None:
    """Let each section's feature (``registry.FEATURES``) refuse what the env cannot run."""
    for name in registry.FEATURES:
        if getattr(config, name, None) is None:
            continue
        try:
            registry.load_feature(name).validate(config, env_cls)
        except ValueError as err:
            message = str(err) if str(err).startswith(name) else f"{name}: {err}"
            raise ConfigError(f"{where}: {message}") from None


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
    config: ExperimentConfig, env_cls: type, hyperparams: Any, where: str
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
    # Every built-in algorithm's hyperparameters have gamma; a plugin's may not.
    gamma = hyperparams.get("gamma")
    if gamma is None:
        raise ConfigError(
            f"{where}: rewards.shaping.gamma: algorithm {config.algorithm.id!r} has no "
            "gamma hyperparameter to take the shaping discount from; set it."
        )
    gamma = float(gamma)
    shaping = rewards.shaping.model_copy(update={"gamma": gamma})
    return rewards.model_copy(update={"shaping": shaping})


def _validate_part(
    model: type[BaseModel], data: dict[str, Any], where: str, prefix: tuple[str, ...]
) -> dict[str, Any]:
    try:
        return model.model_validate(data).model_dump(mode="json")
    except ValidationError as err:
        raise ConfigError(format_validation_error(where, err, model, prefix)) from None
