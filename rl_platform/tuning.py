"""Hyperparameter search: a sweep YAML -> Ray Tune + Optuna (TPE or random) + ASHA.

A sweep YAML is an experiment plus a ``tune:`` section (:class:`~rl_platform.config.TuneSpec`).
Every trial is that experiment with the trial's values set at the search space's key
paths, built by the same builder as ``rlp train``
(:func:`~rl_platform.training.build_algorithm_config`) inside a Tune ``Trainable``
(:class:`SweepTrial`) that reserves what the algorithm asks for
(``default_resource_request``), so trials spread over the Ray cluster's nodes.

Optuna suggests the values (TPE, or its random sampler with ``searcher: random``) and
keeps the study in Optuna's journal file ``optuna.journal`` in the sweep directory by
default (``optuna-dashboard .../optuna.journal`` opens it), or where ``tune.storage``
says (:mod:`~rl_platform.study_storage`). ASHA stops weak trials early;
Optuna records them as PRUNED with their intermediate values, trials that reached the
experiment's stop criterion as COMPLETE and trials that failed beyond their retries
(``resources.max_failures``) as FAIL. A sweep directory ``<output>/<name>/sweep-<stamp>/``
holds:

* ``sweep.yaml``: the resolved sweep (experiment + tune section with the space used);
* Tune's experiment state and one ``trial_<id>/`` folder per trial (``progress.csv``,
  ``result.json``, TensorBoard files, checkpoints);
* ``optuna.journal``: the Optuna study (unless ``tune.storage`` names another storage), and
  ``study.json``: which storage and study the sweep uses (resume and readers open that);
* ``.rlp.lock``: held by the process running or resuming the sweep
  (:mod:`~rl_platform.runs`);
* ``trials.csv``, ``best.yaml`` (a ready-to-run experiment: base + best values),
  ``plots/`` (optimization history, parameter importances, learning curves) and
  ``summary.json``, written at the end.

``rlp tune --resume SWEEP_DIR`` continues a sweep whose driver was stopped (Ctrl-C) or
killed: Tune restores its trials and the searcher (with the study), finished trials are
not run again, and an Optuna trial that a killed driver had asked for but never recorded
is handed to the next new trial, so the study ends with ``num_samples`` trials.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from ray import tune as ray_tune
from ray.tune.search.optuna import OptunaSearch

from rl_platform import registry
from rl_platform.config import (
    SEED_SEARCH_SPACE,
    ConfigError,
    ExperimentConfig,
    TuneSpec,
    apply_overrides,
    load_experiment,
)
from rl_platform.ray_session import check_resources, init_ray, quiet_logs, signals_ignored
from rl_platform.resume import (
    SWEEP_SEARCH_STATE,
    ResumeError,
    check_tune_state,
    resumed,
    trim_tables,
    trim_trial_tables,
)
from rl_platform.runs import (
    SUMMARY_FILE,
    check_free,
    hold,
    holds_directories,
    new_run_dir,
    output_dir,
    read_json,
)
from rl_platform.stopping import (
    ENV_STEPS_KEY,
    criteria_met,
    lookup_metric,
    stop_criteria,
    stop_reached,
)
from rl_platform.study_storage import StudyStorage, StudyStorageError, record, recorded
from rl_platform.training import build_algorithm_config, tune_run_config
from rl_platform.trust import check_own_state

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.yaml"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.yaml"
PLOTS_DIR = "plots"
TOP_TRIALS_PLOTTED = 5
# Tune saves its experiment state (trial statuses and the searcher) at most this often;
# its default ("auto", at least 10 s) would let a killed driver lose up to 10 s of
# finished trials, which a resume then runs again.
EXPERIMENT_STATE_PERIOD_S = "1"
STATE_PERIOD_VARIABLE = "TUNE_GLOBAL_CHECKPOINT_S"

DISTRIBUTIONS = {
    # name -> (number of arguments, what they are)
    "uniform": (2, "[low, high]"),
    "loguniform": (2, "[low, high] with 0 < low"),
    "quniform": (3, "[low, high, q]"),
    "randint": (2, "[low, high] (integers, both included)"),
    "lograndint": (2, "[low, high] (integers, both included, 0 < low)"),
    "qrandint": (3, "[low, high, q] (integers, both included)"),
    "choice": (None, "[value, value, ...]"),
}

# The seed's names -> the algorithm hyperparameters they stand for: the first
# alternative whose fields the algorithm has all of (one sampled value sets them all).
SEMANTIC_PARAMS: dict[str, tuple[tuple[str, ...], ...]] = {
    "lr": (("lr", "critic_lr"), ("lr",)),
    "gamma": (("gamma",),),
    "exploration": (("entropy_coeff",), ("epsilon",), ("exploration_noise",)),
    "batch_size": (("minibatch_size",), ("train_batch_size_per_learner",)),
    "replay_buffer": (("replay_buffer_capacity",),),
}
NETWORK_PARAM = "network"
NETWORK_PATH = "algorithm.network.hidden_sizes"
SEMANTIC_NAMES = (*SEMANTIC_PARAMS, NETWORK_PARAM)
# Experiment fields a search may not change: the run's identity and the sweep itself.
FIXED_PATHS = ("name", "tune")


# --------------------------------------------------------------------------- search space


@dataclass(frozen=True)
class SearchParam:
    """One dimension of a sweep: an Optuna parameter and the experiment paths it sets.

    ``name`` is the parameter's name in Optuna and Tune (a key path, or one of the seed's
    names such as ``exploration``); ``targets`` are the experiment key paths one value
    sets. With ``schedule_end`` a target holding a schedule (``[[step, value], ...]``)
    keeps its steps and only its final value changes (epsilon and noise anneal to it).
    """

    name: str
    kind: str
    args: tuple[Any, ...]
    targets: tuple[str, ...]
    schedule_end: bool = False

    @property
    def choices(self) -> tuple[Any, ...]:
        """The values of a ``choice`` (as written in the YAML)."""
        return tuple(self.args) if self.kind == "choice" else ()

    def domain(self):
        """The Tune search domain (Optuna's distribution is made from it)."""
        a = self.args
        if self.kind == "choice":
            return ray_tune.choice([encode_choice(v) for v in a])
        if self.kind == "uniform":
            return ray_tune.uniform(a[0], a[1])
        if self.kind == "loguniform":
            return ray_tune.loguniform(a[0], a[1])
        if self.kind == "quniform":
            return ray_tune.quniform(a[0], a[1], a[2])
        if self.kind == "randint":  # Tune's upper bound is exclusive, ours inclusive
            return ray_tune.randint(a[0], a[1] + 1)
        if self.kind == "lograndint":
            return ray_tune.lograndint(a[0], a[1] + 1)
        return ray_tune.qrandint(a[0], a[1], a[2])

    def decode(self, value: Any) -> Any:
        """A sampled value as the experiment takes it (choices back from their text)."""
        if self.kind == "choice":
            for choice in self.args:
                if encode_choice(choice) == value:
                    return choice
            raise ValueError(f"{self.name}: {value!r} is not one of the choices {self.args}")
        if self.kind in ("randint", "lograndint", "qrandint"):
            return int(value)
        return float(value)

    def probe_values(self) -> tuple[Any, ...]:
        """Values that must all fit the experiment: both ends of a range, every choice."""
        if self.kind == "choice":
            return self.choices
        return (self.args[0], self.args[1])

    def to_yaml(self) -> dict[str, list[Any]]:
        """The distribution as written in a sweep YAML."""
        return {self.kind: list(self.args)}


def encode_choice(value: Any) -> Any:
    """Optuna's categorical values are scalars: lists and mappings go as their JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def parse_distribution(name: str, raw: Any, where: str) -> tuple[str, tuple[Any, ...]]:
    """Check one ``{kind: args}`` entry of a search space.

    Raises:
        ConfigError: naming ``tune.search_space.<name>``, the value and what was expected.
    """
    at = f"{where}: tune.search_space.{name}"
    kinds = ", ".join(f"{{{k}: {form}}}" for k, (_, form) in DISTRIBUTIONS.items())
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(f"{at} = {raw!r}: expected one distribution, one of: {kinds}.")
    ((kind, args),) = raw.items()
    if kind == "qloguniform":
        raise ConfigError(
            f"{at}: qloguniform is not supported (Optuna cannot quantize a log scale); "
            "use lograndint for integers or choice for a few values."
        )
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{at}: unknown distribution {kind!r}; expected one of: {kinds}.")
    count, form = DISTRIBUTIONS[kind]
    if not isinstance(args, (list, tuple)):
        raise ConfigError(f"{at}: {kind} takes a list {form}, got {args!r}.")
    args = tuple(args)
    if kind == "choice":
        if not args:
            raise ConfigError(f"{at}: choice needs at least one value.")
        encoded = [encode_choice(v) for v in args]
        if len(set(map(repr, encoded))) != len(encoded):
            raise ConfigError(f"{at}: choice {list(args)} repeats a value.")
        return kind, args
    integer = kind.endswith("randint")
    number = int if integer else (int, float)
    if (
        len(args) != count
        or any(isinstance(a, bool) or not isinstance(a, number) for a in args)
        or not all(math.isfinite(a) for a in args)
    ):
        kind_of = "integers" if integer else "numbers"
        raise ConfigError(f"{at}: {kind} takes {count} {kind_of} {form}, got {list(args)}.")
    low, high = args[0], args[1]
    if not low < high:
        raise ConfigError(f"{at}: {kind} needs low < high, got {list(args)}.")
    if kind.startswith("log") and low <= 0:
        raise ConfigError(f"{at}: {kind} needs 0 < low (a log scale), got {list(args)}.")
    if count == 3 and args[2] <= 0:
        raise ConfigError(f"{at}: {kind} needs q > 0, got {list(args)}.")
    return kind, args


def resolve_search_space(
    experiment: ExperimentConfig, where: str = "<sweep>"
) -> tuple[list[SearchParam], list[str]]:
    """The sweep's parameters, the seed's names resolved for the experiment's algorithm.

    An empty ``tune.search_space`` means the seed's space (:data:`SEED_SEARCH_SPACE`);
    there a name the algorithm lacks is skipped, and the skipped names are returned with
    the reason. A seed name written in the YAML must apply.

    Raises:
        ConfigError: an entry is not a key path nor a seed name, or not a distribution.
    """
    spec = experiment.tune or TuneSpec()
    defaults = not spec.search_space
    raw_space = SEED_SEARCH_SPACE if defaults else spec.search_space
    params: list[SearchParam] = []
    skipped: list[str] = []
    for name, raw in raw_space.items():
        kind, args = parse_distribution(name, raw, where)
        if "." in name:
            if name.split(".")[0] in FIXED_PATHS:
                raise ConfigError(
                    f"{where}: tune.search_space.{name}: a sweep cannot vary "
                    f"{name.split('.')[0]!r}; search over algorithm, env, rewards or "
                    "resources fields."
                )
            params.append(SearchParam(name, kind, args, (name,)))
            continue
        if name in FIXED_PATHS:
            raise ConfigError(f"{where}: tune.search_space.{name}: a sweep cannot vary {name!r}.")
        if name not in SEMANTIC_NAMES:
            raise ConfigError(
                f"{where}: tune.search_space.{name}: not an experiment key path (like "
                "algorithm.hyperparams.lr) nor one of the seed's names: "
                f"{', '.join(SEMANTIC_NAMES)}."
            )
        param, reason = _semantic_param(name, kind, args, experiment)
        if param is not None:
            params.append(param)
        elif defaults:
            skipped.append(f"{name} ({reason})")
        else:
            raise ConfigError(f"{where}: tune.search_space.{name}: {reason}.")
    return params, skipped


def _semantic_param(
    name: str, kind: str, args: tuple[Any, ...], experiment: ExperimentConfig
) -> tuple[SearchParam | None, str]:
    algo = experiment.algorithm.id
    hyperparams = experiment.algorithm.hyperparams
    if name == NETWORK_PARAM:
        if hyperparams.get("recurrent"):
            return None, f"{algo} with recurrent: true does not use algorithm.network"
        return SearchParam(name, kind, args, (NETWORK_PATH,)), ""
    alternatives = SEMANTIC_PARAMS[name]
    fields = next((alt for alt in alternatives if all(f in hyperparams for f in alt)), None)
    if fields is None:
        wanted = " or ".join("/".join(alt) for alt in SEMANTIC_PARAMS[name])
        return None, f"{algo} has no {wanted} hyperparameter"
    if fields == ("minibatch_size",) and kind == "choice":
        # a minibatch cannot exceed the train batch it is cut from
        train_batch = hyperparams.get("train_batch_size_per_learner")
        kept = tuple(v for v in args if not isinstance(v, int) or v <= train_batch)
        if not kept:
            return None, f"every choice exceeds train_batch_size_per_learner ({train_batch})"
        args = kept
    targets = tuple(f"algorithm.hyperparams.{f}" for f in fields)
    return SearchParam(name, kind, args, targets, schedule_end=name == "exploration"), ""


def trial_overrides(
    params: Iterable[SearchParam], base: dict[str, Any], values: dict[str, Any]
) -> dict[str, Any]:
    """The ``key.path -> value`` overrides of one trial (values as Tune/Optuna sampled them)."""
    overrides: dict[str, Any] = {}
    for param in params:
        if param.name not in values:
            continue
        value = param.decode(values[param.name])
        for path in param.targets:
            current = _get_path(base, path)
            if param.schedule_end and _is_schedule(current):
                value_at = [list(point) for point in current]
                value_at[-1][1] = value
                overrides[path] = value_at
            else:
                overrides[path] = value
    return overrides


def _get_path(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _is_schedule(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value)
    )


# --------------------------------------------------------------------------- the plan


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


# --------------------------------------------------------------------------- Tune parts


class SweepTrial(ray_tune.Trainable):
    """One trial: the sweep's experiment with the trial's values, built like ``rlp train``.

    ``config`` holds the sampled values by parameter name; ``plan`` the sweep. The env
    entry is registered in the worker too, so envs registered at runtime (plugins,
    tests) work in trials as they do in ``rlp train``.
    """

    def setup(  # noqa: D102
        self, config: dict[str, Any], plan: SweepPlan, env_entry: registry.EnvEntry | None
    ) -> None:
        if env_entry is not None and env_entry.id not in registry.ENVS:
            registry.register_env(env_entry)
        self.metric = plan.spec.metric
        self.experiment = plan.trial_experiment(config)
        self.algo = build_algorithm_config(self.experiment).build_algo()

    def step(self) -> dict[str, Any]:  # noqa: D102
        result = self.algo.train()
        # Tune refuses a first result without the metric (no episode finished yet)
        if lookup_metric(result, self.metric) is None:
            node = result
            *parents, last = self.metric.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node.setdefault(last, math.nan)
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> None:  # noqa: D102
        self.algo.save_checkpoint(checkpoint_dir)

    def load_checkpoint(self, checkpoint: str | dict) -> None:  # noqa: D102
        self.algo.load_checkpoint(checkpoint)

    def cleanup(self) -> None:  # noqa: D102
        self.algo.stop()


class StudySearch(OptunaSearch):
    """Tune's Optuna searcher, with the bookkeeping a resumable study needs.

    * a trial that reached the experiment's stop criterion is COMPLETE; one that ASHA
      stopped early is PRUNED (its intermediate values are in the study); one that
      failed, or ended with no finite metric, is FAIL;
    * each Optuna trial records its Tune trial id, iterations and env steps;
    * after a restore, Optuna trials a killed driver asked for but never recorded are
      handed to the next new Tune trials (same values), so the study does not collect
      orphans; trials the study already finished are not told twice.
    """

    def __init__(self, *args: Any, stop: dict[str, float], **kwargs: Any) -> None:
        self._stop = stop
        self._orphans: list[int] = []
        super().__init__(*args, **kwargs)

    def suggest(self, trial_id: str) -> dict | None:  # noqa: D102
        import optuna

        if trial_id not in self._ot_trials and self._orphans:
            self._ot_trials[trial_id] = optuna.trial.Trial(self._ot_study, self._orphans.pop(0))
        params = super().suggest(trial_id)
        self._ot_trials[trial_id].set_user_attr("tune_trial_id", trial_id)
        return params

    def on_trial_result(self, trial_id: str, result: dict) -> None:  # noqa: D102
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and trial_id not in self._completed_trials:
            self._report(ot_trial, result)

    def _report(self, ot_trial: Any, result: dict) -> None:
        value = _finite(result.get(self.metric))
        if value is None:
            return
        with warnings.catch_warnings():  # a resumed trial may report a step again
            warnings.simplefilter("ignore")
            ot_trial.report(value, int(result.get("training_iteration", 0)))

    def on_trial_complete(  # noqa: D102
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        from optuna.trial import TrialState

        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return
        self._completed_trials.add(trial_id)
        if self._ot_study._storage.get_trial(ot_trial._trial_id).state.is_finished():
            return
        result = result or {}
        value = _finite(result.get(self.metric))
        if result:
            ot_trial.set_user_attr("iterations", int(result.get("training_iteration", 0)))
            ot_trial.set_user_attr("env_steps", _env_steps(result))
            # the last result comes here, not to on_trial_result; a PRUNED trial's value
            # is its last intermediate value
            self._report(ot_trial, result)
        if error or value is None:
            reason = "the trial failed" if error else f"no finite {self.metric}"
            ot_trial.set_user_attr("failure", reason)
            self._ot_study.tell(ot_trial, None, state=TrialState.FAIL)
        elif criteria_met(self._stop, result):
            self._ot_study.tell(ot_trial, value, state=TrialState.COMPLETE)
        else:  # stopped early by the scheduler
            self._ot_study.tell(ot_trial, None, state=TrialState.PRUNED)

    def restore(self, checkpoint_path: str) -> None:  # noqa: D102
        from optuna.trial import TrialState

        super().restore(checkpoint_path)
        storage = self._ot_study._storage
        known = {t._trial_id for t in self._ot_trials.values()}
        running = self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        self._orphans = [t._trial_id for t in running if t._trial_id not in known]
        for trial_id, ot_trial in self._ot_trials.items():
            if storage.get_trial(ot_trial._trial_id).state.is_finished():
                self._completed_trials.add(trial_id)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _env_steps(result: dict[str, Any]) -> int:
    value = lookup_metric(result, ENV_STEPS_KEY)
    if value is None:
        value = lookup_metric(result, f"env_runners/{ENV_STEPS_KEY}")
    return int(value or 0)


@dataclass(frozen=True)
class TrialEvent:
    """What the progress display shows: a trial started, reported, ended or is retried.

    ``kind`` is ``start``, ``result``, ``complete``, ``error`` or ``retry``; a
    ``complete`` event's ``status`` says whether the trial reached the stop criterion
    (``complete``) or the scheduler stopped it (``stopped early``).
    """

    kind: str
    trial_id: str
    metric: str = ""
    status: str = ""
    iteration: int = 0
    value: float | None = None
    env_steps: int = 0
    params: dict[str, Any] = field(default_factory=dict)


_progress_sink: Callable[[TrialEvent], None] | None = None


class SweepProgress(ray_tune.Callback):
    """In the driver: turns Tune's trial events into :class:`TrialEvent` for the display."""

    def __init__(self, metric: str, stop: dict[str, float]) -> None:
        self.metric = metric
        self.stop = stop
        self._written: dict[str, int] = {}  # trial id -> the last iteration in its tables

    def _emit(self, event: TrialEvent) -> None:
        if _progress_sink is not None:
            _progress_sink(replace(event, metric=self.metric))

    def on_trial_start(self, iteration, trials, trial, **info):  # noqa: D102
        self._emit(TrialEvent("start", trial.trial_id, params=dict(trial.config)))

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: D102
        done = int(result.get("training_iteration", 0))
        last = self._written.get(trial.trial_id)
        if last is None or done <= last:
            # resumed or retried from a checkpoint: this iteration and the ones after it
            # are written again (before Tune's loggers append theirs)
            trim_trial_tables(Path(trial.local_path), done - 1, in_place=True)
        self._written[trial.trial_id] = done
        self._emit(
            TrialEvent(
                "result",
                trial.trial_id,
                iteration=int(result.get("training_iteration", 0)),
                value=lookup_metric(result, self.metric),
                env_steps=_env_steps(result),
            )
        )

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: D102
        result = trial.last_result or {}
        self._emit(
            TrialEvent(
                "complete",
                trial.trial_id,
                status="complete" if criteria_met(self.stop, result) else "stopped early",
                iteration=int(result.get("training_iteration", 0)),
                value=lookup_metric(result, self.metric),
                env_steps=_env_steps(result),
            )
        )

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: D102
        self._emit(TrialEvent("error", trial.trial_id))

    def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: D102
        self._emit(TrialEvent("retry", trial.trial_id, iteration=trial.num_failures))


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


# --------------------------------------------------------------------------- results


@dataclass
class TrialRow:
    """One trial's outcome: status, budget used, final metric and values."""

    trial_id: str
    number: int | None  # the Optuna trial number
    status: str  # complete, stopped early, error, interrupted
    iterations: int
    env_steps: int
    value: float | None
    params: dict[str, Any]
    trial_dir: Path | None
    checkpoint: Path | None
    failures: int = 0


@dataclass
class SweepResult:
    """The outcome of :func:`tune`: where everything is, the trials and the best one."""

    sweep_dir: Path
    status: str  # "finished" or "interrupted"
    num_samples: int
    metric: str
    mode: str
    searcher: str
    scheduler: str
    study_name: str
    storage: str
    trials: list[TrialRow] = field(default_factory=list)
    best: TrialRow | None = None
    best_yaml: Path | None = None
    plots: list[Path] = field(default_factory=list)
    skipped_params: list[str] = field(default_factory=list)
    env_steps: int = 0
    wall_time_s: float = 0.0

    def counts(self) -> dict[str, int]:
        """Trials per status."""
        out: dict[str, int] = {}
        for row in self.trials:
            out[row.status] = out.get(row.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (paths as strings)."""

        def clean(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return value

        data = clean(asdict(self))
        data["counts"] = self.counts()
        return data


# --------------------------------------------------------------------------- tune


@holds_directories
def tune(
    source: str | Path | dict[str, Any] | ExperimentConfig | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    *,
    num_samples: int | None = None,
    output: str | Path | None = None,
    address: str | None = None,
    resume: str | Path | None = None,
    progress: Callable[[TrialEvent], None] | None = None,
    verbose: bool = False,
    trust: bool = False,
) -> SweepResult:
    """Run a hyperparameter sweep (or resume a stopped one) and summarise it.

    Resuming unpickles the sweep's Tune state and its trials' checkpoints, which can run
    code of whoever wrote them: only directories this user alone can write are resumed,
    unless `trust`.

    Args:
        source: sweep YAML path, dict or config (an experiment plus ``tune:``; without a
            tune section the defaults apply). Ignored when resuming.
        overrides: ``key.path=value`` overrides (``tune.num_samples=20`` too).
        num_samples: trials in all (overrides ``tune.num_samples``).
        output: parent of the sweep directories (``<output>/<name>/sweep-<stamp>``).
        address: a Ray cluster address; a private local Ray is started when None.
        resume: a sweep directory to continue.
        progress: called with each trial event (in the calling process).
        verbose: let Ray's and the workers' logs through.
        trust: resume even from a directory others can write (``--trust``).

    Raises:
        ConfigError: the sweep is invalid; nothing was started or written.
        ResumeError: `resume` is not a resumable sweep directory.
        UntrustedStateError: `resume` is not this user's own (see `trust`).
    """
    quiet_logs(verbose)
    _quiet_optuna(verbose)
    if resume is not None:
        sweep_dir = Path(resume)
        experiment = _check_resumable(sweep_dir)
        check_own_state(sweep_dir, trust=trust)  # before anything of it is unpickled
        check_free(sweep_dir)  # another process resuming it may be writing its state
        trials = check_tune_state(sweep_dir, SWEEP_SEARCH_STATE, resume_errored=False)
        hold(sweep_dir)  # until tune returns: a second resume of it is refused
        where = str(sweep_dir / SWEEP_FILE)
    elif source is None:
        raise ConfigError("give a sweep (a YAML path, dict or config), or resume=SWEEP_DIR.")
    else:
        where = str(source) if isinstance(source, (str, Path)) else "<sweep>"
        experiment = load_experiment(source, overrides)
        spec = experiment.tune or TuneSpec()
        if num_samples is not None:
            if num_samples < 1:
                raise ConfigError(f"--num-samples = {num_samples}: expected at least 1 trial.")
            spec = spec.model_copy(update={"num_samples": num_samples})
        experiment = experiment.model_copy(update={"tune": spec})
    from rl_platform.storage import is_uri

    target = output if output is not None else experiment.storage
    if resume is None and is_uri(target):
        raise ConfigError(
            f"{where}: a sweep's output {target!r} must be a filesystem path (shared by the "
            "nodes on a cluster): the sweep directory holds the Optuna study's journal file. "
            "Single runs (rlp train) can write to cloud storage."
        )
    plan = plan_sweep(experiment, where)
    spec = plan.spec
    trial_experiment = load_experiment(plan.trial_base)
    algo_config = build_algorithm_config(trial_experiment)
    storage = None
    if resume is None and spec.storage:
        storage = _check_storage(spec, where)  # opened (an RDB's schema made) before Ray
    elif resume is not None:
        storage = _resumed_storage(sweep_dir)

    init_ray(address, verbose)
    check_resources(trial_experiment, algo_config, autoscaling=address is not None)
    resources = algo_config.algo_class.default_resource_request(algo_config)

    if resume is None:
        sweep_dir = _new_sweep_dir(output_dir(output, experiment), experiment.name)
        hold(sweep_dir)
        if spec.study_name is None:
            spec = spec.model_copy(update={"study_name": f"{experiment.name}-{sweep_dir.name}"})
            plan.spec = spec
            plan.experiment = plan.experiment.model_copy(update={"tune": spec})
        (sweep_dir / SWEEP_FILE).write_text(plan.resolved_yaml())
        if storage is None:
            storage = StudyStorage.journal_in(sweep_dir)
        storage.open()
        record(sweep_dir, storage, spec.study_name)
    concurrency = spec.max_concurrent_trials or _trials_that_fit(resources.required_resources)
    concurrency = min(concurrency, spec.num_samples)

    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(
            SweepTrial, plan=plan, env_entry=registry.ENVS.get(experiment.env.id)
        ),
        resources,
    )
    global _progress_sink
    _progress_sink = progress
    state_period = os.environ.get(STATE_PERIOD_VARIABLE)
    os.environ.setdefault(STATE_PERIOD_VARIABLE, EXPERIMENT_STATE_PERIOD_S)
    started = time.monotonic()
    results = None
    try:
        if resume is not None:
            # the rows after the checkpoints the trials restore from are written again
            trim_tables(None, resumed(trials, resume_errored=False))
            tuner = ray_tune.Tuner.restore(
                str(sweep_dir.resolve()),
                trainable=trainable,
                param_space=plan.param_space,
                resume_unfinished=True,
                # a trial that failed beyond its retries is final (FAIL in the study)
                resume_errored=False,
                restart_errored=False,
            )
        else:
            tuner = ray_tune.Tuner(
                trainable,
                param_space=plan.param_space,
                tune_config=_tune_config(plan, storage, concurrency),
                run_config=_run_config(plan, sweep_dir),
            )
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM: Tune did not stop gracefully
        log.info("interrupted; Tune's last saved state is what a resume continues from")
    finally:
        _progress_sink = None
        if state_period is None:
            os.environ.pop(STATE_PERIOD_VARIABLE, None)
    with signals_ignored():  # the summary is written whole, whatever comes now
        elapsed = time.monotonic() - started
        result = summarize(plan, sweep_dir, results, storage, elapsed)
        previous = read_json(sweep_dir / SUMMARY_FILE)
        if previous and previous.get("wall_time_s"):
            result.wall_time_s += float(previous["wall_time_s"])
        (sweep_dir / SUMMARY_FILE).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def _check_storage(spec: TuneSpec, where: str) -> StudyStorage:
    """Open a user-given Optuna storage before anything is written; refuse a used name."""
    storage = StudyStorage.from_setting(spec.storage)
    try:
        names = {s.study_name for s in storage.open().get_all_studies()}
    except StudyStorageError as err:
        raise ConfigError(f"{where}: tune.storage = {spec.storage!r}: {err}") from None
    if spec.study_name is not None and spec.study_name in names:
        raise ConfigError(
            f"{where}: tune.study_name = {spec.study_name!r} already exists in "
            f"{storage.display}; a new sweep needs a new study (another study_name, or null "
            "for a fresh one). `rlp tune --resume SWEEP_DIR` continues a sweep."
        )
    return storage


def _tune_config(plan: SweepPlan, storage: StudyStorage, concurrency: int):
    import optuna
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    spec = plan.spec
    seed = plan.experiment.seed
    if spec.searcher == "optuna":
        # constant_liar: running trials count as bad guesses, so parallel trials spread out
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=spec.startup_trials, constant_liar=concurrency > 1
        )
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    searcher = StudySearch(
        sampler=sampler,
        storage=storage.open(),
        study_name=spec.study_name,
        stop=stop_criteria(plan.experiment),
    )
    if spec.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=plan.max_t,
            grace_period=spec.grace_period,
            reduction_factor=spec.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    return ray_tune.TuneConfig(
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency),
        scheduler=scheduler,
        num_samples=spec.num_samples,
        metric=spec.metric,
        mode=spec.mode,
        trial_dirname_creator=_trial_dirname,
        reuse_actors=False,
    )


def _run_config(plan: SweepPlan, sweep_dir: Path):
    experiment = load_experiment(plan.trial_base)
    progress = SweepProgress(plan.spec.metric, stop_criteria(experiment))
    return tune_run_config(experiment, sweep_dir, [progress])


def _trials_that_fit(per_trial: dict[str, float]) -> int:
    """How many trials the cluster's resources hold at once (at least one)."""
    import ray

    have = ray.cluster_resources()
    counts = [int(have.get(k, 0.0) // v + 1e-9) for k, v in per_trial.items() if v > 0]
    return max(1, min(counts, default=1))


def _new_sweep_dir(output: Path, name: str) -> Path:
    return new_run_dir(output, name, prefix="sweep-")


def _check_resumable(sweep_dir: Path) -> ExperimentConfig:
    """The sweep's experiment; ResumeError if it is no sweep directory or finished (no pickles)."""
    if not sweep_dir.is_dir():
        raise ResumeError(f"{sweep_dir}: no such sweep directory.")
    if not (sweep_dir / SWEEP_FILE).is_file():
        raise ResumeError(f"{sweep_dir}: not a sweep directory (no {SWEEP_FILE}).")
    has_state = list(sweep_dir.glob("experiment_state-*.json"))
    if not has_state or not (sweep_dir / "tuner.pkl").is_file():
        raise ResumeError(
            f"{sweep_dir}: holds no Tune experiment state to resume from (the sweep was "
            "stopped before its first trial started); start it again instead."
        )
    summary = read_json(sweep_dir / SUMMARY_FILE)
    if summary and summary.get("status") == "finished":
        raise ResumeError(
            f"{sweep_dir}: the sweep already finished ({len(summary.get('trials', []))} "
            "trials); nothing to resume. Start a new sweep for more trials."
        )
    try:
        experiment = load_experiment(sweep_dir / SWEEP_FILE)
    except ConfigError as err:
        raise ResumeError(f"{sweep_dir}: its {SWEEP_FILE} no longer validates: {err}") from None
    return experiment


def _resumed_storage(sweep_dir: Path) -> StudyStorage:
    """The storage the sweep was created with, opened (its searcher state opens it too)."""
    try:
        storage, _ = recorded(sweep_dir)
        storage.open()
    except StudyStorageError as err:
        raise ResumeError(f"{sweep_dir}: its Optuna study: {err}") from None
    return storage


def _quiet_optuna(verbose: bool) -> None:
    import optuna

    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# --------------------------------------------------------------------------- summary


def summarize(
    plan: SweepPlan, sweep_dir: Path, results: Any, storage: StudyStorage, wall_time_s: float
) -> SweepResult:
    """Write trials.csv, best.yaml, the plots; return the sweep's result.

    ``results`` is what ``Tuner.fit`` returned, or None when it was interrupted before it
    could return: the trials are then read from Tune's last saved state.
    """
    import optuna

    spec = plan.spec
    study = optuna.load_study(study_name=spec.study_name, storage=storage.open())
    by_tune_id = {
        t.user_attrs["tune_trial_id"]: t
        for t in study.get_trials(deepcopy=False)
        if "tune_trial_id" in t.user_attrs
    }
    trials = _saved_trials(sweep_dir) if results is None else results._experiment_analysis.trials
    rows = [_trial_row(plan, trial, by_tune_id.get(trial.trial_id)) for trial in trials]
    rows.sort(key=lambda r: r.trial_id)
    done = sum(r.status in ("complete", "stopped early", "error") for r in rows)
    status = "finished" if done >= spec.num_samples and results is not None else "interrupted"
    result = SweepResult(
        sweep_dir=sweep_dir,
        status=status,
        num_samples=spec.num_samples,
        metric=spec.metric,
        mode=spec.mode,
        searcher=spec.searcher,
        scheduler=spec.scheduler,
        study_name=spec.study_name or "",
        storage=storage.display,
        trials=rows,
        skipped_params=plan.skipped,
        env_steps=sum(r.env_steps for r in rows),
        wall_time_s=wall_time_s,
    )
    _write_trials_csv(sweep_dir / TRIALS_FILE, rows, plan.params)
    result.best = best_trial(rows, spec.mode)
    if result.best is not None:
        result.best_yaml = sweep_dir / BEST_FILE
        write_best_yaml(plan, result.best, result.best_yaml, sweep_dir)
    result.plots = write_plots(study, rows, plan, sweep_dir / PLOTS_DIR)
    return result


def _saved_trials(sweep_dir: Path) -> list[Any]:
    """The trials of Tune's last saved experiment state (none if it cannot be read)."""
    try:
        return ray_tune.ExperimentAnalysis(str(sweep_dir.resolve())).trials
    except Exception as err:  # noqa: BLE001 (a summary must be written in any case)
        log.warning("could not read the trials of %s: %s", sweep_dir, err)
        return []


STUDY_STATUS = {"COMPLETE": "complete", "PRUNED": "stopped early", "FAIL": "error"}


def _trial_row(plan: SweepPlan, trial: Any, study_trial: Any | None) -> TrialRow:
    """A Tune trial's row; its status comes from the study where Optuna has it.

    The study is the record of what finished (Tune marks trials it stopped on Ctrl-C
    TERMINATED in memory too): COMPLETE is ``complete``, PRUNED ``stopped early``, FAIL
    ``error``; a trial still RUNNING there is ``interrupted`` (or ``pending`` before its
    first result).
    """
    last = trial.last_result or {}
    config = trial.config
    value = _finite(lookup_metric(last, plan.spec.metric))
    if study_trial is not None:
        status = STUDY_STATUS.get(study_trial.state.name, "")
    elif trial.status == "ERROR":
        status = "error"
    elif trial.status == "TERMINATED" and stop_reached(plan.experiment, last):
        status = "complete"
    else:
        status = ""
    if not status:
        status = "interrupted" if last else "pending"
    checkpoint = None
    latest = getattr(trial, "checkpoint", None)
    if latest is not None:
        checkpoint = Path(latest.path)
    return TrialRow(
        trial_id=trial.trial_id,
        number=None if study_trial is None else study_trial.number,
        status=status,
        iterations=int(last.get("training_iteration", 0)),
        env_steps=_env_steps(last),
        value=value,
        params={p.name: p.decode(config[p.name]) for p in plan.params if p.name in config},
        trial_dir=Path(trial.path) if getattr(trial, "path", None) else None,
        checkpoint=checkpoint,
        failures=int(getattr(trial, "num_failures", 0)),
    )


def best_trial(rows: list[TrialRow], mode: str) -> TrialRow | None:
    """The best trial that ran to the stop criterion (else the best with any value)."""
    sign = 1.0 if mode == "max" else -1.0
    for pool in (
        [r for r in rows if r.status == "complete" and r.value is not None],
        [r for r in rows if r.value is not None],
    ):
        if pool:
            return max(pool, key=lambda r: sign * r.value)
    return None


def _write_trials_csv(path: Path, rows: list[TrialRow], params: list[SearchParam]) -> None:
    names = [p.name for p in params]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["trial", "optuna_trial", "status", "iterations", "env_steps", "value", "failures"]
            + names
            + ["trial_dir"]
        )
        for r in rows:
            writer.writerow(
                [r.trial_id, r.number, r.status, r.iterations, r.env_steps, r.value, r.failures]
                + [json.dumps(r.params[n]) if n in r.params else "" for n in names]
                + [r.trial_dir or ""]
            )


def write_best_yaml(plan: SweepPlan, best: TrialRow, path: Path, sweep_dir: Path) -> None:
    """The base experiment with the best trial's values: ``rlp train best.yaml`` runs it."""
    encoded = {p.name: encode_choice(v) if p.kind == "choice" else v for p, v in _pairs(plan, best)}
    experiment = plan.best_experiment(encoded)
    values = ", ".join(f"{k} = {_short(v)}" for k, v in best.params.items())
    header = (
        f"# The best trial of the sweep {sweep_dir} (trial {best.trial_id}, Optuna trial "
        f"{best.number}):\n# {plan.spec.metric} = {best.value} after {best.iterations} "
        f"iterations.\n# Values found: {values}.\n#\n#   rlp train {path}\n"
    )
    path.write_text(header + experiment.to_yaml())


def _pairs(plan: SweepPlan, row: TrialRow) -> list[tuple[SearchParam, Any]]:
    return [(p, row.params[p.name]) for p in plan.params if p.name in row.params]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value)


# --------------------------------------------------------------------------- plots


def write_plots(study: Any, rows: list[TrialRow], plan: SweepPlan, plots_dir: Path) -> list[Path]:
    """Optimization history, parameter importances and learning curves as PNG (and HTML).

    Each plot is skipped, with a log line, when the study cannot make it yet (e.g. the
    importances need two completed trials whose values differ).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as optuna_mpl

    plots_dir.mkdir(exist_ok=True)
    written: list[Path] = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    makers: list[tuple[str, Callable[[], Any], Callable[[], Any] | None]] = []
    if complete:
        makers.append(
            (
                "optimization_history",
                lambda: optuna_mpl.plot_optimization_history(study),
                _plotly("plot_optimization_history", study),
            )
        )
    values = {t.value for t in complete}
    if len(complete) >= 2 and len(values) >= 2:
        makers.append(
            (
                "param_importances",
                lambda: optuna_mpl.plot_param_importances(study),
                _plotly("plot_param_importances", study),
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, make_png, make_html in makers:
            try:
                axes = make_png()
                figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
                figure.set_size_inches(8, 5)
                figure.tight_layout()
                path = plots_dir / f"{name}.png"
                figure.savefig(path, dpi=100)
                plt.close(figure)
                written.append(path)
                if make_html is not None:
                    html = plots_dir / f"{name}.html"
                    make_html().write_html(str(html))
                    written.append(html)
            except (ValueError, RuntimeError, ZeroDivisionError) as err:
                log.warning("could not plot %s: %s", name, err)
    curves = _learning_curves(rows, plan, plots_dir / "learning_curves.png")
    if curves is not None:
        written.append(curves)
    return written


def _plotly(function: str, study: Any) -> Callable[[], Any] | None:
    """Optuna's interactive figure maker, when plotly is installed (it is optional)."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        return None
    import optuna.visualization as vis

    return lambda: getattr(vis, function)(study)


def _learning_curves(rows: list[TrialRow], plan: SweepPlan, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    metric = plan.spec.metric
    curves = []
    for row in rows:
        progress = row.trial_dir / "progress.csv" if row.trial_dir else None
        if progress is None or not progress.is_file():
            continue
        xs, ys = [], []
        with progress.open() as handle:
            for record in csv.DictReader(handle):
                y = _finite(record.get(metric))
                x = _finite(record.get(ENV_STEPS_KEY)) or _finite(record.get("training_iteration"))
                if x is not None and y is not None:
                    xs.append(x)
                    ys.append(y)
        if xs:
            curves.append((row, xs, ys))
    if not curves:
        return None
    sign = 1.0 if plan.spec.mode == "max" else -1.0
    ranked = sorted(
        (c for c in curves if c[0].value is not None),
        key=lambda c: (c[0].status == "complete", sign * c[0].value),
        reverse=True,
    )
    top = {id(c[0]) for c in ranked[:TOP_TRIALS_PLOTTED]}
    figure, axes = plt.subplots(figsize=(8, 5))
    for row, xs, ys in curves:
        if id(row) in top:
            continue
        axes.plot(xs, ys, color="0.75", linewidth=1)
    for row, xs, ys in ranked[:TOP_TRIALS_PLOTTED]:
        label = f"{row.trial_id} ({row.status}, {row.value:.3g})"
        axes.plot(xs, ys, marker="o", markersize=3, label=label)
    axes.set_xlabel("env steps")
    axes.set_ylabel(metric)
    shown = min(len(ranked), TOP_TRIALS_PLOTTED)
    axes.set_title(f"learning curves: the top {shown} trials (grey: the others)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
