"""MAPPO trains through `rlp train`'s path with the batched sampler on remote env runners."""

import numpy as np
import pytest
from batched import train_on_batched_runner

from rl_platform import registry
from rl_platform.training import train


def experiment(**overrides):
    base = {
        "name": "batched",
        "seed": 0,
        "env": {"id": "rendezvous", "config": {"num_agents": 3, "episode_length": 25}},
        "algorithm": {
            "id": "mappo",
            "hyperparams": {"train_batch_size_per_learner": 1000, "minibatch_size": 500},
        },
        "rewards": {"team": 0.5, "shaping": {"potential": "proximity", "weight": 0.5}},
        "resources": {
            "num_env_runners": 2,
            "num_envs_per_env_runner": 4,
            "num_cpus_per_env_runner": 0.5,
            "sampler": "batched",
        },
        "stop": {"training_iteration": 3},
        "checkpoint": {"every": 0},
    }
    base.update(overrides)
    return base


def test_mappo_trains_with_remote_batched_runners_and_a_curriculum(tmp_path, ray_address):
    config = experiment(
        curriculum={"levels": ["easy", "hard"], "schedule": {"easy": 0, "hard": 1}},
    )
    result = train(config, output=tmp_path)
    assert result.status == "finished" and result.iterations == 3
    runners = result.metrics["env_runners"]
    assert result.metrics["num_env_steps_sampled_lifetime"] >= 3000
    assert np.isfinite(runners["episode_return_mean"])
    assert runners["episode_len_mean"] == 25
    assert set(runners["rewards"]) >= {"env", "shaping", "total", "proximity", "effort"}
    assert set(runners["module_episode_returns_mean"]) == {"shared"}
    assert result.metrics["curriculum"]["level_name"] == "hard"
    # episodes reset after the switch were played at the new level on the remote runners
    assert runners["curriculum"]["played"].get("hard", 0) > 0


def test_mappo_on_mpe_simple_spread_runs_on_the_batched_runner(tmp_path, ray_address, caplog):
    """A PettingZoo env trains through `rlp train`'s path on B copies of its batched core."""
    config = experiment(
        env={"id": "pettingzoo:mpe2.simple_spread_v3:parallel_env", "config": {"N": 2}},
        rewards={},
        resources={"num_env_runners": 1, "num_envs_per_env_runner": 8, "sampler": "batched"},
        stop={"training_iteration": 2},
    )
    config["algorithm"]["hyperparams"] = {
        "train_batch_size_per_learner": 400, "minibatch_size": 200, "num_epochs": 1,
    }  # fmt: skip
    runners = train_on_batched_runner(config, tmp_path, caplog, copies=8)
    assert runners["num_episodes_lifetime"] >= 16  # 8 copies x 25-step episodes, 2 x 400 steps
    assert runners["episode_len_mean"] == 25  # the env's max_cycles
    assert set(runners["agent_episode_returns_mean"]) == {"agent_0", "agent_1"}


def test_a_crashed_batched_runner_is_restarted(tmp_path, ray_address):
    from flaky_core_env import FlakyCoreRendezvousEnv

    registry.register_env(registry.EnvEntry("flaky_core", "test only", FlakyCoreRendezvousEnv))
    try:
        marker = tmp_path / "crashed"
        config = experiment(
            env={"id": "flaky_core", "config": {"crash_marker": str(marker)}},
            resources={"num_env_runners": 1, "num_envs_per_env_runner": 4, "sampler": "batched"},
            # the restart is asynchronous (a new actor, then a health probe): margin for a
            # loaded machine, as in test_fault_tolerance.py
            stop={"training_iteration": 12},
        )
        config["algorithm"]["hyperparams"] = {
            "train_batch_size_per_learner": 200, "minibatch_size": 100, "num_epochs": 1,
        }  # fmt: skip
        result = train(config, output=tmp_path / "runs")
    finally:
        registry.ENVS.pop("flaky_core")
    assert marker.exists(), "the core never crashed: the test proves nothing"
    assert result.status == "finished" and result.iterations == 12
    assert result.metrics["fault_tolerance"]["num_remote_worker_restarts"] >= 1


@pytest.mark.slow
def test_mappo_on_resource_allocation_stays_far_above_random_with_the_batched_sampler(
    tmp_path, ray_address
):
    from rl_platform.evaluation.baselines import RANDOM, episode_scores

    env_config = {"num_agents": 4, "num_resources": 3, "episode_length": 50, "task": "easy"}
    rows = []
    config = experiment(
        env={"id": "resource_allocation", "config": env_config},
        rewards={"team": 1.0},
        resources={"num_env_runners": 1, "num_envs_per_env_runner": 32, "sampler": "batched"},
        stop={"env_steps": 90000},
    )
    config["algorithm"]["hyperparams"] = {
        "lr": 1.0e-3, "gamma": 0.5, "entropy_coeff": 0.0, "log_std_init": -2.0,
        "train_batch_size_per_learner": 2000, "minibatch_size": 500, "num_epochs": 5,
    }  # fmt: skip
    train(config, output=tmp_path, progress=rows.append)
    random = float(episode_scores("resource_allocation", RANDOM, env_config, 50, 0).mean())
    first = rows[0].episode_return_mean / 4  # per agent and episode
    last = np.mean([r.episode_return_mean for r in rows[-3:]]) / 4
    # random requests score about 43.4, the heuristics 48.3-49.2, the optimum 50
    # A near-deterministic initial policy (log_std -2) already plays ~47.9 here, so this
    # checks that training through the batched runner holds a return far above random
    # without degrading; the equal-return comparison of both samplers is bench work.
    assert last > random + 4.0 and last > first - 1.0, (random, first, last)
