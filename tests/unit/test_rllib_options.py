"""``algorithm.rllib``: any RLlib config setting, checked against RLlib's config class."""

import pytest

from rl_platform.builder import build_algorithm_config
from rl_platform.config import ConfigError, load_experiment

# RLlib refuses truncated episodes without GAE's value bootstrap: both settings together
GAE_OFF = {"use_gae": False, "batch_mode": "complete_episodes"}


@pytest.mark.parametrize("algo", ["ppo", "mappo"])
def test_an_rllib_option_reaches_the_built_config(experiment_dict, algo):
    raw = experiment_dict(algorithm=algo, overrides={"algorithm.rllib": GAE_OFF})
    config = build_algorithm_config(load_experiment(raw))
    assert config.use_gae is False and config.batch_mode == "complete_episodes"
    default = build_algorithm_config(load_experiment(experiment_dict(algorithm=algo)))
    assert default.use_gae is True


def test_an_option_rllib_validates_is_a_config_error(experiment_dict):
    raw = experiment_dict(overrides={"algorithm.rllib": {"use_gae": False}})
    with pytest.raises(ConfigError, match="RLlib refused"):  # truncation needs GAE
        build_algorithm_config(load_experiment(raw))


def test_several_options_reach_the_config(experiment_dict):
    options = {"shuffle_batch_per_epoch": False, "min_sample_timesteps_per_iteration": 50}
    raw = experiment_dict(overrides={"algorithm.rllib": options})
    config = build_algorithm_config(load_experiment(raw))
    assert config.shuffle_batch_per_epoch is False
    assert config.min_sample_timesteps_per_iteration == 50


def test_a_misspelt_option_names_the_close_match(experiment_dict):
    raw = experiment_dict(overrides={"algorithm.rllib": {"use_gea": False}})
    with pytest.raises(ConfigError, match=r"algorithm\.rllib\.use_gea.*did you mean use_gae"):
        build_algorithm_config(load_experiment(raw))


@pytest.mark.parametrize(
    ("key", "pointer"),
    [
        ("lr", "algorithm.hyperparams.lr"),
        ("num_env_runners", "resources.num_env_runners"),
        ("seed", "use seed"),
        ("env_config", "env.config"),
        ("enable_rl_module_and_learner", "new API stack"),
    ],
)
def test_a_setting_the_yaml_owns_is_refused_at_load_with_the_field_to_use(
    experiment_dict, key, pointer
):
    raw = experiment_dict(overrides={"algorithm.rllib": {key: 1}})
    with pytest.raises(ConfigError, match=rf"algorithm\.rllib\b.*{key}: ") as err:
        load_experiment(raw)
    assert pointer in str(err.value)


def test_rlp_train_exits_2_on_a_misspelt_option_before_anything_starts(
    cli, make_experiment, tmp_path
):
    path = make_experiment(overrides={"algorithm.rllib": {"use_gea": False}})
    out = tmp_path / "runs"
    result = cli("train", path, "--output", out)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "use_gea" in result.stderr and "did you mean use_gae" in result.stderr
    assert not out.exists()


def test_rlp_train_refuses_an_owned_setting_with_the_pointer(cli, make_experiment, tmp_path):
    path = make_experiment(overrides={"algorithm.rllib": {"num_epochs": 3}})
    result = cli("train", path, "--output", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "algorithm.hyperparams.num_epochs" in result.stderr
