"""Sweep planning without Ray: search spaces, the seed's defaults, validation, the study."""

import math
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from rl_platform.cli import app
from rl_platform.config import ConfigError, load_experiment
from rl_platform.tuning import (
    SearchParam,
    StudySearch,
    TrialRow,
    best_trial,
    encode_choice,
    plan_sweep,
    resolve_search_space,
    trial_overrides,
)

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def sweep(algo="ppo", env="two_step_game", hyperparams=None, space=None, **tune_section):
    return {
        "name": "s",
        "env": {"id": env},
        "algorithm": {"id": algo, "hyperparams": hyperparams or {}},
        "resources": {"num_env_runners": 0},
        "stop": {"training_iteration": 4},
        "tune": {"search_space": space or {}, **tune_section},
    }


def by_name(params):
    return {p.name: p for p in params}


# --------------------------------------------------------------------------- the seed's space


def test_seed_space_for_ppo_maps_exploration_to_entropy_and_skips_replay():
    experiment = load_experiment(
        sweep(hyperparams={"train_batch_size_per_learner": 200, "minibatch_size": 100})
    )
    params, skipped = resolve_search_space(experiment)
    found = by_name(params)
    assert set(found) == {"lr", "gamma", "exploration", "batch_size", "network"}
    assert found["lr"].targets == ("algorithm.hyperparams.lr",)
    assert found["lr"].kind == "loguniform" and found["lr"].args == (1e-5, 1e-2)
    assert found["exploration"].targets == ("algorithm.hyperparams.entropy_coeff",)
    assert found["batch_size"].targets == ("algorithm.hyperparams.minibatch_size",)
    # a minibatch cannot exceed the train batch of 200
    assert found["batch_size"].choices == (32, 64, 128)
    assert found["network"].targets == ("algorithm.network.hidden_sizes",)
    assert len(skipped) == 1 and skipped[0].startswith("replay_buffer")


@pytest.mark.parametrize("algo", ["iql", "vdn", "qmix"])
def test_seed_space_for_value_based_algorithms_sets_final_epsilon_and_replay(algo):
    experiment = load_experiment(sweep(algo=algo))
    found = by_name(resolve_search_space(experiment)[0])
    assert found["exploration"].targets == ("algorithm.hyperparams.epsilon",)
    assert found["batch_size"].targets == ("algorithm.hyperparams.train_batch_size_per_learner",)
    assert found["replay_buffer"].targets == ("algorithm.hyperparams.replay_buffer_capacity",)
    assert found["replay_buffer"].kind == "lograndint"

    base = experiment.model_dump(mode="json")
    overrides = trial_overrides(found.values(), base, {"exploration": 0.2, "replay_buffer": 20_000})
    # the default epsilon schedule keeps its steps and anneals to the sampled value
    assert overrides["algorithm.hyperparams.epsilon"] == [[0, 1.0], [50_000, 0.2]]
    assert overrides["algorithm.hyperparams.replay_buffer_capacity"] == 20_000


def test_seed_space_for_maddpg_sets_both_learning_rates_and_the_noise():
    experiment = load_experiment(sweep(algo="maddpg", env="rendezvous"))
    found = by_name(resolve_search_space(experiment)[0])
    assert found["lr"].targets == (
        "algorithm.hyperparams.lr",
        "algorithm.hyperparams.critic_lr",
    )
    assert found["exploration"].targets == ("algorithm.hyperparams.exploration_noise",)
    assert "replay_buffer" in found
    overrides = trial_overrides(found.values(), experiment.model_dump(), {"lr": 3e-4})
    assert overrides == {
        "algorithm.hyperparams.lr": 3e-4,
        "algorithm.hyperparams.critic_lr": 3e-4,
    }


def test_constant_epsilon_is_replaced_and_recurrent_agents_skip_the_network():
    experiment = load_experiment(
        sweep(algo="qmix", hyperparams={"epsilon": 1.0, "recurrent": True})
    )
    params, skipped = resolve_search_space(experiment)
    found = by_name(params)
    assert "network" not in found and any(s.startswith("network") for s in skipped)
    overrides = trial_overrides(params, experiment.model_dump(), {"exploration": 0.1})
    assert overrides == {"algorithm.hyperparams.epsilon": 0.1}


def test_a_seed_name_written_in_the_yaml_must_apply():
    experiment = load_experiment(sweep(space={"replay_buffer": {"lograndint": [1000, 10000]}}))
    with pytest.raises(ConfigError, match="tune.search_space.replay_buffer: ppo has no"):
        resolve_search_space(experiment)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("space", "fragments"),
    [
        ({"algorithm.hyperparams.lr": {"normal": [0, 1]}}, ["unknown distribution 'normal'"]),
        ({"algorithm.hyperparams.lr": [1e-4, 1e-2]}, ["expected a valid dictionary"]),
        ({"algorithm.hyperparams.lr": {"uniform": [0, 1], "loguniform": [1, 2]}}, ["one of"]),
        ({"algorithm.hyperparams.lr": {"loguniform": [0, 1e-2]}}, ["0 < low"]),
        ({"algorithm.hyperparams.lr": {"uniform": [1e-2, 1e-4]}}, ["low < high"]),
        ({"algorithm.hyperparams.lr": {"uniform": [1e-4]}}, ["uniform takes 2 numbers"]),
        ({"algorithm.hyperparams.num_epochs": {"randint": [1, 2.5]}}, ["2 integers"]),
        ({"algorithm.hyperparams.lr": {"qloguniform": [1e-4, 1e-2, 1e-4]}}, ["not supported"]),
        ({"algorithm.network.hidden_sizes": {"choice": []}}, ["at least one value"]),
        ({"algorithm.hyperparams.lrr": {"uniform": [0.1, 0.2]}}, ["hyperparams.lrr", "unknown"]),
        ({"algorithm.hyperparams.gamma": {"uniform": [0.9, 1.5]}}, ["value 1.5", "gamma"]),
        ({"name": {"choice": ["a", "b"]}}, ["cannot vary 'name'"]),
        ({"tune.num_samples": {"randint": [1, 5]}}, ["cannot vary 'tune'"]),
        ({"learning_rate": {"uniform": [0.1, 0.2]}}, ["not an experiment key path"]),
        (
            {"algorithm.hyperparams.minibatch_size": {"choice": [100, 5000]}},
            ["value 5000", "minibatch_size"],
        ),
    ],
)
def test_bad_search_spaces_are_refused_naming_the_parameter(space, fragments):
    raw = sweep(hyperparams={"train_batch_size_per_learner": 400}, space=space)
    with pytest.raises(ConfigError) as err:
        plan_sweep(load_experiment(raw), "sweep.yaml")
    message = str(err.value)
    assert "tune.search_space." in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"stop": {"env_steps": 1000}}, "needs stop.training_iteration"),
        ({"tune": {"grace_period": 9}}, "grace_period = 9 exceeds"),
        ({"tune": {"trial_resources": {"num_env_runner": 1}}}, "tune.trial_resources"),
    ],
)
def test_bad_tune_sections_are_refused(change, fragment):
    raw = sweep(space={"algorithm.hyperparams.lr": {"loguniform": [1e-4, 1e-2]}})
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if key == "tune" else value
    with pytest.raises(ConfigError, match=fragment):
        plan_sweep(load_experiment(raw), "sweep.yaml")


def test_the_resolved_sweep_yaml_reloads_to_the_same_plan():
    hyperparams = {"train_batch_size_per_learner": 200, "minibatch_size": 100}
    plan = plan_sweep(load_experiment(sweep(hyperparams=hyperparams)))
    again = plan_sweep(load_experiment(yaml.safe_load(plan.resolved_yaml())))
    assert again.params == plan.params
    assert plan.base.get("tune") is None and "tune" not in plan.trial_base


def test_trial_resources_apply_to_trials_but_not_to_the_best_config():
    raw = sweep(
        space={"gamma": {"uniform": [0.9, 0.99]}}, trial_resources={"num_envs_per_env_runner": 4}
    )
    plan = plan_sweep(load_experiment(raw))
    assert plan.trial_experiment({"gamma": 0.95}).resources.num_envs_per_env_runner == 4
    best = plan.best_experiment({"gamma": 0.95})
    assert best.resources.num_envs_per_env_runner == 1
    assert best.algorithm.hyperparams["gamma"] == 0.95 and best.tune is None


def test_choices_of_lists_round_trip_through_optuna_scalars():
    param = SearchParam("network", "choice", ([64, 64], [128]), ("algorithm.network.hidden_sizes",))
    encoded = [encode_choice(v) for v in param.choices]
    assert encoded == ["[64, 64]", "[128]"]
    assert param.decode("[128]") == [128]
    domain = param.domain()
    assert sorted(domain.categories) == sorted(encoded)


def test_best_trial_prefers_trials_that_ran_to_the_end():
    rows = [
        TrialRow("a", 0, "stopped early", 1, 100, 9.0, {}, None, None),
        TrialRow("b", 1, "complete", 4, 400, 5.0, {}, None, None),
        TrialRow("c", 2, "complete", 4, 400, 7.0, {}, None, None),
        TrialRow("d", 3, "error", 0, 0, None, {}, None, None),
    ]
    assert best_trial(rows, "max").trial_id == "c"
    assert best_trial(rows, "min").trial_id == "b"
    assert best_trial(rows[:1], "max").trial_id == "a"
    assert best_trial(rows[3:], "max") is None


def test_shipped_sweeps_plan():
    sweeps = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))
    assert sweeps
    for path in sweeps:
        plan = plan_sweep(load_experiment(path), str(path))
        assert plan.params, path


# --------------------------------------------------------------------------- the study


def make_searcher(storage, name="s"):
    from ray import tune

    searcher = StudySearch(
        sampler=optuna.samplers.RandomSampler(seed=0),
        storage=optuna.storages.RDBStorage(storage),
        study_name=name,
        stop={"training_iteration": 3},
    )
    space = {"x": tune.uniform(0, 1)}
    assert searcher.set_search_properties("score", "max", space)
    return searcher


def result(iteration, score):
    return {"training_iteration": iteration, "score": score, "num_env_steps_sampled_lifetime": 10}


def test_study_records_complete_pruned_and_failed_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    searcher = make_searcher(storage)
    for trial_id in ("a", "b", "c", "d"):
        assert "x" in searcher.suggest(trial_id)
    searcher.on_trial_result("a", result(1, 1.0))
    searcher.on_trial_complete("a", result(3, 2.0))  # reached the stop criterion
    searcher.on_trial_complete("b", result(1, 0.5))  # stopped early by ASHA
    searcher.on_trial_complete("c", error=True)
    searcher.on_trial_complete("d", result(3, math.nan))
    searcher.on_trial_complete("a", result(3, 9.0))  # told once only

    study = optuna.load_study(study_name="s", storage=storage)
    states = [(t.state, t.value) for t in study.trials]
    assert states == [
        (TrialState.COMPLETE, 2.0),
        (TrialState.PRUNED, 0.5),
        (TrialState.FAIL, None),
        (TrialState.FAIL, None),
    ]
    assert study.trials[0].intermediate_values == {1: 1.0, 3: 2.0}
    assert study.trials[0].user_attrs == {"tune_trial_id": "a", "iterations": 3, "env_steps": 10}


def test_restored_searcher_hands_orphaned_optuna_trials_to_new_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    searcher = make_searcher(storage)
    searcher.suggest("a")
    searcher.on_trial_complete("a", result(3, 1.0))
    searcher.suggest("b")
    searcher.save(str(tmp_path / "searcher.pkl"))
    # after the save, the driver asks for one more trial and is killed before saving again
    orphan = searcher.suggest("c")

    restored = make_searcher(storage)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("e") == orphan  # same Optuna trial, same values
    restored.on_trial_complete("b", result(3, 2.0))
    restored.on_trial_complete("e", result(3, 3.0))
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert [t.user_attrs["tune_trial_id"] for t in study.trials] == ["a", "b", "e"]


# --------------------------------------------------------------------------- the command


def test_tune_command_refuses_bad_input_without_starting_anything(tmp_path):
    output = tmp_path / "runs"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(sweep(space={"algorithm.hyperparams.gamma": {"uniform": [0.5, 2]}}))
    )
    cases = [
        ([], "give a sweep YAML"),
        (["missing.yaml"], "no such experiment file"),
        ([str(bad)], "tune.search_space.algorithm.hyperparams.gamma"),
        ([str(bad), "--resume", str(tmp_path)], "not both"),
        (["--resume", str(tmp_path)], "not a sweep directory"),
        (["--resume", str(tmp_path), "--num-samples", "3"], "cannot change a resumed sweep"),
        ([str(bad), "--num-samples", "0"], "--num-samples = 0"),
    ]
    for args, fragment in cases:
        done = runner.invoke(app, ["tune", *args, "--output", str(output)], env={"COLUMNS": "300"})
        assert done.exit_code == 2, (args, done.output)
        assert fragment in " ".join(done.output.split()), (args, done.output)
    assert not output.exists()


def test_a_given_storage_is_opened_before_anything_is_written(tmp_path):
    from rl_platform.tuning import tune

    output = tmp_path / "runs"
    space = {"algorithm.hyperparams.gamma": {"uniform": [0.9, 0.99]}}
    with pytest.raises(ConfigError, match="tune.storage = 'nonsense://x': cannot open"):
        tune(sweep(space=space, storage="nonsense://x"), output=output)
    used = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="taken", storage=used)
    with pytest.raises(ConfigError, match="study_name = 'taken' already exists"):
        tune(sweep(space=space, storage=used, study_name="taken"), output=output)
    assert not output.exists()
