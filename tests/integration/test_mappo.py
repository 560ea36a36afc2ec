"""MAPPO and IPPO train through `rlp train`'s path and learn on rendezvous."""

import numpy as np
import pytest

from rl_platform.training import train


def experiment(algo, **overrides):
    base = {
        "name": algo,
        "env": {"id": "rendezvous", "config": {}},
        "algorithm": {
            "id": algo,
            "hyperparams": {"train_batch_size_per_learner": 1000, "minibatch_size": 500},
        },
        "stop": {"training_iteration": 8},
        "checkpoint": {"every": 0},
    }
    for key, value in overrides.items():
        base[key] = value
    return base


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "discrete"), [("mappo", False), ("ippo", True)])
def test_learns_on_rendezvous(tmp_path, ray_address, algo, discrete):
    # Both algorithms and both action kinds, each once (the other two pairs add no code
    # path); sampled in the trial's process, remote runners are tested below.
    rows = []
    config = experiment(
        algo,
        env={"id": "rendezvous", "config": {"discrete": discrete}},
        resources={"num_env_runners": 0},
    )
    result = train(config, output=tmp_path, progress=rows.append)
    first = np.mean([r.episode_return_mean for r in rows[:2]])
    last = np.mean([r.episode_return_mean for r in rows[-2:]])
    # random moves score about -50; 8 small iterations must take a clear step toward 0
    assert last > first + 15, (first, last)
    assert (result.best_checkpoint / "policies" / "manifest.json").is_file()


@pytest.mark.slow
def test_per_agent_modules_several_env_runners_and_a_remote_learner(tmp_path, ray_address):
    config = experiment(
        "mappo",
        stop={"training_iteration": 2},
        resources={
            "num_env_runners": 2,
            "num_cpus_per_env_runner": 0.5,
            "num_learners": 1,
        },
    )
    config["algorithm"]["shared_policy"] = False
    result = train(config, output=tmp_path)
    assert result.status == "finished" and result.iterations == 2
    modules = sorted(p.stem for p in (result.best_checkpoint / "policies").glob("*.pt"))
    assert modules == ["agent_0", "agent_1", "agent_2"]


@pytest.mark.slow
def test_mappo_on_a_pettingzoo_env(tmp_path, ray_address):
    config = experiment(
        "mappo",
        env={"id": "pettingzoo:mpe2.simple_spread_v3:parallel_env", "config": {"N": 2}},
        stop={"training_iteration": 1},
    )
    assert train(config, output=tmp_path).status == "finished"


@pytest.mark.slow
def test_loaded_checkpoint_reaches_the_remote_env_runners(tmp_path, ray_address):
    import torch

    from rl_platform.builder import build_algorithm_config
    from rl_platform.checkpoints import load_algorithm
    from rl_platform.config import load_experiment

    config = build_algorithm_config(
        load_experiment(
            experiment(
                "mappo",
                algorithm={
                    "id": "mappo",
                    "hyperparams": {"train_batch_size_per_learner": 200, "minibatch_size": 100},
                },
                resources={"num_env_runners": 1, "num_envs_per_env_runner": 1},
            )
        )
    )

    def runner_weights(algo):
        (state,) = algo.env_runner_group.foreach_env_runner(
            lambda r: r.module["shared"].state_dict(), local_env_runner=False
        )
        return state

    algo = config.build_algo()
    try:
        algo.train()
        algo.save_to_path(str(tmp_path))
        saved = runner_weights(algo)
    finally:
        algo.stop()
    for _ in range(3):  # without the synchronous push about 2 restores in 3 kept stale weights
        restored = load_algorithm(tmp_path)
        try:
            for key, value in runner_weights(restored).items():
                torch.testing.assert_close(value, saved[key])
        finally:
            restored.stop()
    fresh = config.build_algo()  # the same seed: its runners hold the initial weights
    try:
        assert any(not torch.equal(v, saved[k]) for k, v in runner_weights(fresh).items())
        fresh.load_checkpoint(str(tmp_path))  # what Tune's restore calls
        for key, value in runner_weights(fresh).items():
            torch.testing.assert_close(value, saved[key])
    finally:
        fresh.stop()
