"""A validated sweep: the experiment, its parameters, and what each trial starts from.

:func:`plan_sweep` checks a sweep before Ray starts (every path, distribution and range
end, built like ``rlp train``), so a bad parameter fails here with its name, not in a trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

from rl_platform.config import (
    ConfigError,
    ExperimentConfig,
    TuneSpec,
    apply_overrides,
    load_experiment,
)
from rl_platform.training import build_algorithm_config
from rl_platform.tuning.space import (
    SearchParam,
    encode_choice,
    resolve_search_space,
    trial_overrides,
)


@dataclass
class SweepPlan:
    """A validated sweep: the experiment, its parameters and what each trial starts from.

    ``base`` is the experiment without its tune section; ``trial_base`` is ``base`` with
    ``tune.trial_resources`` applied (what every trial runs with).
    """

    experiment: ExperimentConfig
    spec: TuneSpec
    params: list[SearchParam]
    skipped: list[str]
    base: dict[str, Any]
    trial_base: dict[str, Any]
    max_t: int | None

    @property
    def param_space(self) -> dict[str, Any]:
        """Tune's ``param_space``: one domain per parameter name."""
        return {p.name: p.domain() for p in self.params}

    def trial_experiment(self, values: dict[str, Any]) -> ExperimentConfig:
        """The experiment one trial runs (raises ConfigError where the values do not fit)."""
        return load_experiment(self.trial_base, trial_overrides(self.params, self.base, values))

    def best_experiment(self, values: dict[str, Any]) -> ExperimentConfig:
        """The experiment with the given values and the experiment's own resources."""
        return load_experiment(self.base, trial_overrides(self.params, self.base, values))

    def resolved_yaml(self) -> str:
        """The sweep as run: the resolved experiment plus the tune section with its space."""
        data = self.experiment.model_dump(mode="json")
        data["tune"]["search_space"] = {p.name: p.to_yaml() for p in self.params}
        return yaml.safe_dump(data, sort_keys=False)


def plan_sweep(
    experiment: ExperimentConfig, where: str = "<sweep>", check_build: bool = True
) -> SweepPlan:
    """Validate a sweep before Ray starts: every path, distribution and range end.

    Each parameter's range ends (every value of a choice) are set on the experiment one at
    a time, validated like a ``--set`` override and (``check_build``) built into an RLlib
    config, and so is one joint sample, so a bad path or value fails here with the
    parameter named, not in a trial.

    Raises:
        ConfigError: the tune section, a parameter or the trial resources do not fit.
    """
    spec = experiment.tune or TuneSpec()
    experiment = experiment.model_copy(update={"tune": spec})
    params, skipped = resolve_search_space(experiment, where)
    if not params:
        raise ConfigError(
            f"{where}: tune.search_space: nothing to search (every seed name was skipped: "
            f"{'; '.join(skipped)}); give a search_space."
        )
    base = experiment.model_copy(update={"tune": None}).model_dump(mode="json")
    base.pop("tune")
    resources = {f"resources.{k}": v for k, v in spec.trial_resources.items()}
    try:
        trial_base = apply_overrides(base, resources, where)
        trial_experiment = load_experiment(trial_base)
    except ConfigError as err:
        raise ConfigError(
            f"{where}: tune.trial_resources = {spec.trial_resources!r} does not fit the "
            f"resources section: {_strip_source(err)}"
        ) from None
    if check_build:  # the experiment itself, before any parameter is blamed
        build_algorithm_config(trial_experiment)

    for param in params:
        for value in param.probe_values():
            encoded = encode_choice(value) if param.kind == "choice" else value
            overrides = trial_overrides([param], base, {param.name: encoded})
            try:
                probe = load_experiment(trial_base, overrides)
                if check_build:
                    build_algorithm_config(probe)
            except ConfigError as err:
                raise ConfigError(
                    f"{where}: tune.search_space.{param.name} ({param.kind} "
                    f"{list(param.args)}): the value {value!r} does not fit the experiment: "
                    f"{_strip_source(err)}"
                ) from None

    max_t = experiment.stop.training_iteration
    if spec.scheduler == "asha":
        if max_t is None:
            raise ConfigError(
                f"{where}: tune.scheduler = 'asha' needs stop.training_iteration (ASHA's "
                "budget per trial); set it, or use scheduler: none."
            )
        if spec.grace_period > max_t:
            raise ConfigError(
                f"{where}: tune.grace_period = {spec.grace_period} exceeds "
                f"stop.training_iteration = {max_t}."
            )
    plan = SweepPlan(experiment, spec, params, skipped, base, trial_base, max_t)
    if check_build:
        sample = _sample_point(params, experiment.seed)
        try:
            build_algorithm_config(plan.trial_experiment(sample))
        except ConfigError as err:
            raise ConfigError(
                f"{where}: a sample of the search space ({sample}) does not build: "
                f"{_strip_source(err)}"
            ) from None
    return plan


def _strip_source(err: ConfigError) -> str:
    text = str(err)
    for prefix in ("<dict>: ", "<config>: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _sample_point(params: list[SearchParam], seed: int) -> dict[str, Any]:
    import random

    rng = random.Random(seed)
    point: dict[str, Any] = {}
    for p in params:
        if p.kind == "choice":
            point[p.name] = encode_choice(rng.choice(p.choices))
        elif p.kind.endswith("randint"):
            point[p.name] = rng.randint(p.args[0], p.args[1])
        elif p.kind == "loguniform":
            point[p.name] = math.exp(rng.uniform(math.log(p.args[0]), math.log(p.args[1])))
        else:
            point[p.name] = rng.uniform(p.args[0], p.args[1])
    return point
