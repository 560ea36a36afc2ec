"""The composition root and its two protocols: registered algorithms and features."""

import ast
from pathlib import Path

import pytest

from rl_platform import builder, registry
from rl_platform.config import load_experiment
from rl_platform.rewards import RewardEnv, RewardMetricsCallback

ALGORITHMS_DIR = Path(builder.__file__).parent / "algorithms"
ABOVE_ALGORITHMS = (  # features and everything above them
    "rl_platform.builder",
    "rl_platform.training",
    "rl_platform.rewards",
    "rl_platform.curriculum",
    "rl_platform.safety",
    "rl_platform.monitoring",
    "rl_platform.advanced",
    "rl_platform.evaluation",
    "rl_platform.sampling",
    "rl_platform.warm_start",
    "rl_platform.checkpoints",
    "rl_platform.monitoring_feature",
    "rl_platform.safety_feature",
    "rl_platform.serving",
    "rl_platform.tuning",
    "rl_platform.cluster",
    "rl_platform.adaptation",
    "rl_platform.cli",
)


def experiment(**sections):
    """A PPO experiment on rendezvous with only the given sections switched on."""
    raw = {
        "name": "t",
        "env": {"id": "rendezvous"},
        "algorithm": {"id": "ppo"},
        "monitoring": {"enabled": False},
        **sections,
    }
    return load_experiment(raw)


@pytest.mark.parametrize("name", sorted(registry.FEATURES))
def test_every_feature_follows_the_protocol(name):
    feature = registry.load_feature(name)
    assert registry.Feature in type(feature).__mro__  # inherits the do-nothing defaults
    plain = experiment()
    assert isinstance(feature.callbacks(plain), list)


@pytest.mark.parametrize("algo", sorted(registry.ALGORITHMS))
def test_every_algorithm_declares_what_the_builder_needs(algo):
    algorithm = registry.ALGORITHMS[algo].load()
    assert registry.Algorithm in algorithm.__mro__
    for flag in ("batched_sampling", "global_state", "module_spaces", "discrete_only"):
        assert isinstance(getattr(algorithm, flag), bool)
    assert callable(algorithm.new_config) and callable(algorithm.configure)


def test_callbacks_follow_the_feature_order():
    order = list(registry.FEATURES)
    assert order[0] == "rewards" and order[-1] == "curiosity"
    assert order.index("curriculum") < order.index("evaluation")  # it reads the level
    exp = experiment(
        curriculum={"levels": ["easy", "hard"], "schedule": {"easy": 0, "hard": 5}},
        evaluation={"every": 2},
    )
    names = [c.__name__ for c in builder.experiment_callbacks(exp)]
    assert names == ["RewardMetricsCallback", "BoundCurriculumCallback", "BoundEvaluationCallback"]
    assert builder.runner_env(exp) is RewardEnv


def test_a_section_left_out_contributes_nothing():
    exp = experiment()
    assert builder.experiment_callbacks(exp) == [RewardMetricsCallback]
    for name in registry.FEATURES:
        feature = registry.load_feature(name)
        feature.validate(exp, registry.get_env("rendezvous").load())
        if name != "rewards":
            assert feature.runner_env(exp) is None and feature.callbacks(exp) == []
            assert feature.configure("config", exp, None) == "config"


def test_feature_validation_keeps_the_check_functions_messages(tmp_path):
    from rl_platform.advanced import curiosity
    from rl_platform.warm_start import check_initial_policies

    exp = experiment(algorithm={"id": "ppo"}, curiosity={})
    bad = exp.model_copy(update={"algorithm": exp.algorithm.model_copy(update={"id": "qmix"})})
    env_cls = registry.get_env("rendezvous").load()
    with pytest.raises(ValueError) as direct:
        curiosity.check(bad, env_cls)
    with pytest.raises(ValueError) as through:
        registry.load_feature("curiosity").validate(bad, env_cls)
    assert str(direct.value) == str(through.value)

    missing = exp.model_copy(update={"initial_policies": str(tmp_path / "none")})
    with pytest.raises(ValueError) as direct:
        check_initial_policies(missing.initial_policies, "rendezvous")
    with pytest.raises(ValueError) as through:
        registry.load_feature("initial_policies").validate(missing, env_cls)
    assert str(direct.value) == str(through.value)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted(ALGORITHMS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_algorithms_import_no_feature_and_not_the_builder(path):
    upward = sorted(
        name
        for name in _imports(path)
        if any(name == pkg or name.startswith(f"{pkg}.") for pkg in ABOVE_ALGORITHMS)
    )
    assert upward == [], f"{path.name} imports {upward}"


def test_the_quickstart_samples_with_the_batched_runner_by_default(quickstart_path):
    from rl_platform.sampling import BatchedEnvRunner

    experiment = load_experiment(quickstart_path)
    assert experiment.resources.sampler == "auto"
    choice = builder.choose_sampler(experiment)
    assert (choice.runner, choice.reason) == ("batched", None)
    assert choice.line() == "sampler: batched (10 env copies per runner)"
    assert builder.build_algorithm_config(experiment).env_runner_cls is BatchedEnvRunner


@pytest.mark.parametrize("sampler", ["auto", "batched"])
def test_a_run_the_batched_runner_cannot_take_falls_back_with_its_reason(quickstart_path, sampler):
    shield = "{constraints: [{name: max_position, limit: 0.3}]}"
    experiment = load_experiment(
        quickstart_path, [f"safety={shield}", f"resources.sampler={sampler}"]
    )
    choice = builder.choose_sampler(experiment)
    assert choice.runner == "stock" and "safety shield" in choice.reason
    assert choice.line() == f"sampler: stock (the batched runner cannot run this: {choice.reason})"
    assert builder.build_algorithm_config(experiment).env_runner_cls is None


def test_an_explicit_stock_sampler_says_nothing(quickstart_path):
    experiment = load_experiment(quickstart_path, ["resources.sampler=stock"])
    choice = builder.choose_sampler(experiment)
    assert choice.runner == "stock" and choice.line() is None
    assert builder.build_algorithm_config(experiment).env_runner_cls is None


def test_a_view_that_overrides_step_keeps_the_stock_runner():
    from rl_platform.envs.rendezvous import RendezvousEnv

    class Logged(RendezvousEnv):
        def step(self, action_dict):
            return super().step(action_dict)

    class Own(RendezvousEnv):
        core_cls = RendezvousEnv.core_cls

        def step(self, action_dict):
            return super().step(action_dict)

    assert builder.view_override(RendezvousEnv) is None
    assert "Logged overrides step()" in builder.view_override(Logged)
    assert builder.view_override(Own) is None  # the class that names the core owns its view
    registry.register_env(registry.EnvEntry("logged_rendezvous", "test only", Logged))
    try:
        choice = builder.choose_sampler(experiment(env={"id": "logged_rendezvous"}))
    finally:
        registry.ENVS.pop("logged_rendezvous")
    assert choice.runner == "stock" and "overrides step()" in choice.reason


def test_train_and_tune_hand_the_sampler_line_to_their_notice(quickstart_path):
    from rl_platform.training import tell_sampler

    lines = []
    tell_sampler(load_experiment(quickstart_path), lines.append)
    tell_sampler(load_experiment(quickstart_path, ["resources.sampler=stock"]), lines.append)
    assert lines == ["sampler: batched (10 env copies per runner)"]
