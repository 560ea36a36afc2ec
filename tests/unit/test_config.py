"""The experiment YAML: good files load resolved, bad ones are refused with a clear message."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import BaseModel, ValidationError

from rl_platform.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    experiment_json_schema,
    load_experiment,
)

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "name": "t",
    "env": {"id": "rendezvous", "config": {"num_agents": 3}},
    "algorithm": {"id": "ppo"},
    "stop": {"training_iteration": 2},
}


def with_(path: str, value, base=GOOD):
    return apply_overrides(base, {path: value})


def without(key: str) -> dict:
    return {k: v for k, v in GOOD.items() if k != key}


# (case id, raw config or text, expected fragments of the message)
BAD_CONFIGS = [
    ("missing name", without("name"), ["name: required field is missing"]),
    ("name with a space", with_("name", "my run"), ["name = 'my run'", "pattern"]),
    ("unknown top-level key", with_("epochs", 3), ["epochs: unknown key", "algorithm, checkpoint"]),
    ("missing env", without("env"), ["env: required field is missing"]),
    ("unknown env id", with_("env.id", "nope"), ["env.id = 'nope'", "rendezvous"]),
    (
        "unknown env config key",
        with_("env.config.bogus", 1),
        ["env.config.bogus: unknown key", "num_agents"],
    ),
    (
        "too few agents",
        with_("env.config.num_agents", 1),
        ["env.config.num_agents = 1", "greater than or equal to 2"],
    ),
    (
        "agents not a number",
        with_("env.config.num_agents", "many"),
        ["env.config.num_agents = 'many'", "valid integer"],
    ),
    (
        "unknown task",
        with_("env.config.task", "legendary"),
        ["env.config.task = 'legendary'", "'easy'"],
    ),
    ("unknown algorithm", with_("algorithm.id", "dqn2"), ["algorithm.id = 'dqn2'", "ppo"]),
    (
        "negative lr",
        with_("algorithm.hyperparams.lr", -1),
        ["algorithm.hyperparams.lr = -1", "greater than 0"],
    ),
    (
        "gamma above 1",
        with_("algorithm.hyperparams.gamma", 1.5),
        ["algorithm.hyperparams.gamma = 1.5", "less than or equal to 1"],
    ),
    (
        "misspelled hyperparameter",
        with_("algorithm.hyperparams.learning_rate", 0.1),
        ["algorithm.hyperparams.learning_rate: unknown key", "lr"],
    ),
    (
        "empty network",
        with_("algorithm.network.hidden_sizes", []),
        ["algorithm.network.hidden_sizes", "at least 1"],
    ),
    (
        "zero-width layer",
        with_("algorithm.network.hidden_sizes", [64, 0]),
        ["algorithm.network.hidden_sizes[1] = 0", "greater than 0"],
    ),
    (
        "unknown activation",
        with_("algorithm.network.activation", "sigmoid"),
        ["algorithm.network.activation = 'sigmoid'", "'tanh'"],
    ),
    (
        "shared_policy not a bool",
        with_("algorithm.shared_policy", "maybe"),
        ["algorithm.shared_policy = 'maybe'", "boolean"],
    ),
    (
        "unknown reward component",
        with_("rewards.weights.profit", 1.0),
        ["rewards.weights.profit", "no reward component 'profit'", "proximity, effort"],
    ),
    (
        "non-finite reward weight",
        with_("rewards.weights.proximity", math.inf),
        ["rewards", "finite"],
    ),
    (
        "team reward share above 1",
        with_("rewards.team", 1.5),
        ["rewards.team = 1.5", "less than or equal to 1"],
    ),
    (
        "unknown curriculum level",
        with_("curriculum", {"levels": ["easy", "legendary"]}),
        ["curriculum.levels[1] = 'legendary'", "easy, medium, hard, expert"],
    ),
    ("empty curriculum", with_("curriculum", {"levels": []}), ["curriculum.levels", "at least 1"]),
    (
        "threshold out of [0, 1]",
        with_("curriculum", {"levels": ["easy"], "promote": {"threshold": 1.5}}),
        ["curriculum.promote.threshold = 1.5", "less than or equal to 1"],
    ),
    (
        "negative env runners",
        with_("resources.num_env_runners", -1),
        ["resources.num_env_runners = -1", "greater than or equal to 0"],
    ),
    (
        "zero envs per runner",
        with_("resources.num_envs_per_env_runner", 0),
        ["resources.num_envs_per_env_runner = 0", "greater than 0"],
    ),
    ("no stop criterion", with_("stop", {}), ["stop", "no stop criterion set"]),
    (
        "zero iterations",
        with_("stop.training_iteration", 0),
        ["stop.training_iteration = 0", "greater than 0"],
    ),
    (
        "unknown stop key",
        with_("stop.iterations", 3),
        ["stop.iterations: unknown key", "training_iteration"],
    ),
    (
        "bad checkpoint mode",
        with_("checkpoint.mode", "best"),
        ["checkpoint.mode = 'best'", "'max' or 'min'"],
    ),
    (
        "negative evaluation interval",
        with_("evaluation.every", -5),
        ["evaluation.every = -5", "greater than or equal to 0"],
    ),
    ("negative seed", with_("seed", -1), ["seed = -1", "greater than or equal to 0"]),
    (
        "unknown searcher",
        with_("tune", {"searcher": "grid"}),
        ["tune.searcher = 'grid'", "'optuna' or 'random'"],
    ),
    # strict types: no boolean taken as a number, no number as a boolean or a string
    (
        "boolean as a count",
        with_("evaluation.episodes", True),
        ["evaluation.episodes = True", "expected a number, not a boolean"],
    ),
    ("boolean as a share", with_("rewards.team", True), ["rewards.team = True", "not a boolean"]),
    (
        "boolean in a list of widths",
        with_("algorithm.network.hidden_sizes", [64, True]),
        ["algorithm.network.hidden_sizes = [64, True]", "a number at [1], not a boolean"],
    ),
    (
        "boolean as an env number",
        with_("env.config.num_agents", True),
        ["env.config.num_agents = True", "not a boolean"],
    ),
    (
        "boolean as a hyperparameter",
        with_("algorithm.hyperparams.lr", False),
        ["algorithm.hyperparams.lr = False", "not a boolean"],
    ),
    (
        "boolean as a reward weight",
        with_("rewards.weights", {"distance": True}),
        ["rewards.weights = {'distance': True}", "a number at distance"],
    ),
    (
        "boolean as a trial count",
        with_("tune", {"num_samples": True}),
        ["tune.num_samples = True", "not a boolean"],
    ),
    (
        "number as a boolean",
        with_("rewards.difference", 1),
        ["rewards.difference = 1", "expected a boolean"],
    ),
    ("number as a string", with_("checkpoint.metric", 5), ["checkpoint.metric = 5", "string"]),
    # env ids name no arbitrary code
    (
        "env module not allowed",
        with_("env.id", "pettingzoo:os:system"),
        [
            "env.id = 'pettingzoo:os:system'",
            "module 'os' is not allowed",
            "pettingzoo.*, mpe2.*, vmas.*",
            "RLP_TRUSTED_MODULES",
            "--trust-module",
        ],
    ),
    (
        "env factory not a family factory",
        with_("env.id", "pettingzoo:mpe2.simple_spread_v3:make_env"),
        ["env.id = 'pettingzoo:mpe2.simple_spread_v3:make_env'", "env, parallel_env, raw_env"],
    ),
    (
        "env factory through attributes",
        with_("env.id", "pettingzoo:pettingzoo.utils:env.__globals__"),
        ["env.id = 'pettingzoo:pettingzoo.utils:env.__globals__'", "no attribute paths"],
    ),
    ("top level is a list", "- name: x\n", ["expected a mapping of experiment fields"]),
    ("not YAML", "name: [unclosed\n", ["not valid YAML at line"]),
]


@pytest.mark.parametrize(("case", "raw", "fragments"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_refused_with_a_clear_message(tmp_path, case, raw, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert "\n" not in message and "Traceback" not in message


def test_table_has_at_least_twenty_cases():
    assert len(BAD_CONFIGS) >= 20


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_experiment(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("seed", "is not of the form key.path=value"),
        ("=3", "is not of the form key.path=value"),
        ("stop.training_iteration.x=1", "stop.training_iteration holds 2, not a mapping"),
        ("stop..x=1", "empty part"),
        ("stop.iters=3", "stop.iters: unknown key"),
        ("algorithm.hyperparams.lr=-0.5", "algorithm.hyperparams.lr = -0.5"),
    ],
)
def test_bad_override_is_refused(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_experiment(GOOD, [override])
    assert fragment in str(info.value)


def test_overrides_parse_yaml_values():
    config = load_experiment(
        GOOD,
        [
            "stop.training_iteration=7",
            "algorithm.hyperparams.lr=1e-3",
            "algorithm.network.hidden_sizes=[32, 16]",
            "env.config.discrete=true",
        ],
    )
    assert config.stop.training_iteration == 7
    assert config.algorithm.hyperparams["lr"] == pytest.approx(1e-3)
    assert config.algorithm.network.hidden_sizes == (32, 16)
    assert config.env.config["discrete"] is True


def test_loaded_config_is_resolved_frozen_and_round_trips(tmp_path):
    config = load_experiment(GOOD)
    # env and algorithm defaults are filled in, so the dump re-runs the experiment exactly
    assert config.env.config["episode_length"] == 25
    assert config.algorithm.hyperparams["gamma"] == 0.99
    with pytest.raises(ValidationError):
        config.seed = 3  # type: ignore[misc]
    path = tmp_path / "resolved.yaml"
    path.write_text(config.to_yaml())
    assert load_experiment(path) == config


def test_shipped_experiments_validate():
    for path in sorted((ROOT / "experiments").glob("**/*.yaml")):
        assert isinstance(load_experiment(path), ExperimentConfig), path


def test_shipped_schema_is_current():
    shipped = json.loads((ROOT / "experiments" / "experiment.schema.json").read_text())
    hint = "regenerate: rlp schema --output experiments/experiment.schema.json"
    assert shipped == experiment_json_schema(), hint


def test_strict_types_reach_every_depth_and_keep_yaml_conveniences():
    from typing import Literal

    from pydantic import PositiveInt

    from rl_platform.yaml_model import YamlModel

    class Model(YamlModel):
        count: PositiveInt = 1
        share: float | None = None
        flag: bool = False
        widths: tuple[PositiveInt, ...] = (1,)
        ranges: dict[str, tuple[float, float]] = {}
        fragment: PositiveInt | Literal["auto"] = "auto"
        anything: dict[str, object] = {}

    good = Model.model_validate(
        {"widths": [8, 8], "ranges": {"a": [0, 1.5]}, "share": "1e-3", "anything": {"x": True}}
    )
    assert good.widths == (8, 8) and good.ranges["a"] == (0.0, 1.5) and good.share == 1e-3
    assert Model.model_validate({"flag": np.bool_(True), "count": np.int64(3)}).count == 3
    for field, value in [
        ("count", True),
        ("count", np.bool_(True)),
        ("share", False),
        ("flag", 1),
        ("flag", "yes"),
        ("widths", [8, True]),
        ("ranges", {"a": [0.0, True]}),
        ("fragment", True),
    ]:
        with pytest.raises(ValidationError, match="boolean"):
            Model.model_validate({field: value})


def test_every_yaml_model_is_strict():
    from rl_platform import registry
    from rl_platform.yaml_model import YamlModel

    def nested(annotation):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield annotation
            for field in annotation.model_fields.values():
                yield from nested(field.annotation)
        for arg in getattr(annotation, "__args__", ()):
            yield from nested(arg)

    models = list(nested(ExperimentConfig))
    models += [entry.load().config_model for entry in registry.ENVS.values()]
    models += [registry.get_env("pettingzoo:mpe2.simple_spread_v3:env").load().config_model]
    models += [entry.load().Hyperparams for entry in registry.ALGORITHMS.values()]
    assert len(models) > 20
    for model in models:
        assert issubclass(model, YamlModel), model


def test_each_algorithm_declares_its_hyperparameters_once():
    from rl_platform import registry
    from rl_platform.config.algorithms import ALGORITHM_SPECS

    assert set(ALGORITHM_SPECS) == set(registry.ALGORITHMS)
    for algo_id, spec in ALGORITHM_SPECS.items():
        params = spec.model_fields["hyperparams"].annotation
        assert registry.ALGORITHMS[algo_id].load().Hyperparams is params, algo_id


def test_rllib_configs_take_their_defaults_from_the_models():
    from rl_platform.algorithms.maddpg import MADDPGConfig
    from rl_platform.algorithms.qmix import ValueDecompositionConfig
    from rl_platform.config import MADDPGParams, QMIXParams

    for config, model in (ValueDecompositionConfig(), QMIXParams), (MADDPGConfig(), MADDPGParams):
        defaults = model().model_dump(mode="json")
        for name in defaults.keys() - {"agent_id_in_obs", "critic_hidden_sizes"}:
            assert getattr(config, name) == defaults[name], name


def test_schema_offers_each_algorithms_own_hyperparameters():
    from rl_platform import registry

    schema = experiment_json_schema()
    algorithm = schema["properties"]["algorithm"]
    assert algorithm["discriminator"]["propertyName"] == "id"
    assert set(algorithm["discriminator"]["mapping"]) == set(registry.ALGORITHMS)
    defs = schema["$defs"]

    def hyperparams_of(algo_id):
        spec = defs[algorithm["discriminator"]["mapping"][algo_id].rsplit("/", 1)[1]]
        ref = spec["properties"]["hyperparams"]["$ref"].rsplit("/", 1)[1]
        return defs[ref]["properties"]

    assert {"lr", "clip_param"} <= set(hyperparams_of("ppo"))
    assert "use_value_norm" in hyperparams_of("mappo")
    assert "use_value_norm" not in hyperparams_of("ppo")
    assert {"mixing_embed_dim", "epsilon"} <= set(hyperparams_of("qmix"))
    assert {"lr", "critic_lr", "exploration_noise"} <= set(hyperparams_of("maddpg"))


def test_an_algorithm_registered_at_run_time_is_checked_against_its_module(monkeypatch):
    from rl_platform import registry

    entry = registry.AlgorithmEntry("my_ppo", "a plugin", "rl_platform.algorithms.ppo")
    monkeypatch.setitem(registry.ALGORITHMS, "my_ppo", entry)
    raw = with_("algorithm.id", "my_ppo")
    config = load_experiment(apply_overrides(raw, {"algorithm.hyperparams.lr": 1e-3}))
    assert config.algorithm.hyperparams["lr"] == 1e-3
    assert config.algorithm.hyperparams["gamma"] == 0.99  # defaults filled in
    assert load_experiment(yaml.safe_load(config.to_yaml())) == config
    with pytest.raises(ConfigError, match=r"algorithm\.hyperparams\.lrr: unknown key.* lr"):
        load_experiment(apply_overrides(raw, {"algorithm.hyperparams.lrr": 1e-3}))


def test_hyperparameters_read_like_a_mapping_too():
    config = load_experiment(with_("algorithm.id", "qmix"))
    hyperparams = config.algorithm.hyperparams
    assert hyperparams.lr == hyperparams["lr"] == hyperparams.get("lr") == 5e-4
    assert "recurrent" in hyperparams and "clip_param" not in hyperparams
    assert hyperparams.get("clip_param") is None
    with pytest.raises(KeyError):
        hyperparams["clip_param"]
