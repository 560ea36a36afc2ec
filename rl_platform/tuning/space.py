"""A sweep's search space: the ``tune.search_space`` entries as Optuna/Tune parameters.

Each entry is an experiment key path or one of the seed's names (``lr``, ``exploration``
...), resolved per algorithm; :func:`trial_overrides` turns one trial's sampled values
into the ``key.path -> value`` overrides of its experiment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rl_platform.config import SEED_SEARCH_SPACE, ConfigError, ExperimentConfig, TuneSpec

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
        from ray import tune as ray_tune

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
        if hyperparams.get("recurrent") and algo in ("iql", "vdn", "qmix"):  # GRU agents only
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
