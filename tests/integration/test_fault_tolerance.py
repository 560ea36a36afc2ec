"""A crashing env runner is restarted by RLlib and the run goes on."""

from rl_platform.training import train


def test_crashed_env_runner_is_restarted_and_training_goes_on(tmp_path, flaky_env, ray_address):
    marker = tmp_path / "crashed"
    experiment = {
        "name": "flaky",
        "env": {"id": flaky_env, "config": {"crash_marker": str(marker)}},
        "algorithm": {
            "id": "ppo",
            "hyperparams": {
                "train_batch_size_per_learner": 200,
                "minibatch_size": 100,
                "num_epochs": 1,
            },
        },
        "resources": {"num_env_runners": 1},
        # the restart is asynchronous (a new actor process, then a health probe): on a
        # loaded machine it took more than the 3 iterations after the crash at step 150
        "stop": {"training_iteration": 10},
        "checkpoint": {"every": 0},
    }
    result = train(experiment, output=tmp_path / "runs")
    assert marker.exists(), "the env never crashed: the test proves nothing"
    assert result.status == "finished"
    assert result.iterations == 10
    assert result.metrics["fault_tolerance"]["num_remote_worker_restarts"] >= 1
