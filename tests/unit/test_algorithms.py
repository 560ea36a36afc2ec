"""Every registered algorithm builds a valid RLlib config for every registered env."""

import pytest

from rl_platform import registry
from rl_platform.builder import build_algorithm_config
from rl_platform.config import ConfigError, load_experiment


@pytest.mark.parametrize("algo", sorted(registry.ALGORITHMS))
@pytest.mark.parametrize("env_id", sorted(registry.ENVS))
@pytest.mark.parametrize("shared", [True, False])
def test_algorithm_builds_for_env(algo, env_id, shared):
    discrete_only = getattr(registry.ALGORITHMS[algo].load(), "discrete_only", False)
    experiment = load_experiment(
        {
            "name": "t",
            "env": {"id": env_id, "config": {"discrete": True} if discrete_only else {}},
            "algorithm": {"id": algo, "shared_policy": shared},
            "resources": {"num_env_runners": 2, "num_envs_per_env_runner": 2},
        }
    )
    config = build_algorithm_config(experiment)
    assert config.num_env_runners == 2
    expected = {"shared"} if shared else set(registry.ENVS[env_id].load()({}).possible_agents)
    assert set(config.policies) == expected


def test_rllib_refusal_is_a_config_error():
    experiment = load_experiment(
        {
            "name": "t",
            "env": {"id": "rendezvous"},
            "algorithm": {
                "id": "ppo",
                "hyperparams": {"train_batch_size_per_learner": 100, "minibatch_size": 500},
            },
        }
    )
    with pytest.raises(ConfigError, match="RLlib refused"):
        build_algorithm_config(experiment)


@pytest.mark.parametrize("algo", ["mappo", "ippo"])
def test_log_std_hyperparameters_reach_the_built_module(algo):
    import math

    experiment = load_experiment(
        {
            "name": "t",
            "env": {"id": "resource_allocation"},
            "algorithm": {"id": algo, "hyperparams": {"log_std_init": -2.0}},
        }
    )
    config = build_algorithm_config(experiment)
    env = config.env(config.env_config)  # the GlobalStateEnv the runners build
    module = config.get_multi_rl_module_spec(env=env).build()["shared"]
    assert module.log_std.tolist() == [-2.0] * 3  # state-independent, as configured
    assert math.isclose(float(module._center[0]), 0.5) and module._bounded


@pytest.mark.parametrize("algo", sorted(registry.ALGORITHMS))
def test_every_algorithm_trains_on_the_engineered_reward_with_a_curriculum(algo):
    """The reward section and the curriculum reach every algorithm's env runners unchanged."""
    from rl_platform.curriculum import CurriculumCallback
    from rl_platform.rewards import EPISODE_INFO, RewardMetricsCallback

    discrete_only = getattr(registry.ALGORITHMS[algo].load(), "discrete_only", False)
    experiment = load_experiment(
        {
            "name": "t",
            "env": {"id": "rendezvous", "config": {"discrete": discrete_only}},
            "algorithm": {"id": algo},
            "rewards": {
                "difference": True,
                "shaping": {"potential": "spread"},
                "coordination": {"weight": 0.1, "prefer": "diverse"},
            },
            "curriculum": {"levels": ["easy", "hard"], "schedule": {"easy": 0, "hard": 5}},
        }
    )
    config = build_algorithm_config(experiment)
    callbacks = config.callbacks_class
    assert RewardMetricsCallback in callbacks
    assert any(issubclass(c, CurriculumCallback) for c in callbacks)
    env = config.env(config.env_config)
    env.reset(seed=0)
    env.set_task("hard")
    done, infos = False, {}
    while not done:
        actions = {a: env.action_spaces[a].sample() for a in env.possible_agents}
        _, _, terms, truncs, infos = env.step(actions)
        done = terms["__all__"] or truncs["__all__"]
    summary = infos["agent_0"][EPISODE_INFO]
    assert {"env", "difference", "shaping", "coordination", "total"} <= set(summary)
    if discrete_only:  # one-hot actions: similarity in [0, 1], so diverse only penalizes
        assert summary["coordination"] <= 0
