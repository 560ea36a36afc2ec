"""A short RLlib training iteration on every registered env and on a PettingZoo env."""

import pytest

from rl_platform import registry
from rl_platform.training import train

ENVS = [(env_id, {}) for env_id in sorted(registry.ENVS)]
ENVS += [(env_id, {"discrete": True}) for env_id in sorted(registry.ENVS)]
ENVS += [("pettingzoo:mpe2.simple_spread_v3:parallel_env", {"N": 2})]
# These two also sample on a remote env runner (the env built in another process); the
# others sample in the trial's process, which proves the same of the env and saves
# starting a worker per case.
REMOTE = {("rendezvous", "{}"), ("pettingzoo:mpe2.simple_spread_v3:parallel_env", "{'N': 2}")}


@pytest.mark.slow
@pytest.mark.parametrize(("env_id", "config"), ENVS, ids=lambda v: str(v))
def test_one_training_iteration(tmp_path, ray_address, env_id, config):
    experiment = {
        "name": "smoke",
        "env": {"id": env_id, "config": config},
        "algorithm": {
            "id": "ppo",
            "hyperparams": {
                "train_batch_size_per_learner": 200,
                "minibatch_size": 100,
                "num_epochs": 1,
            },
        },
        "stop": {"training_iteration": 1},
        "checkpoint": {"every": 0},
        "resources": {"num_env_runners": int((env_id, str(config)) in REMOTE)},
    }
    result = train(experiment, output=tmp_path)
    assert result.status == "finished" and result.iterations == 1
    assert result.env_steps >= 200
    assert result.best_checkpoint is not None
    assert (result.best_checkpoint / "policies" / "manifest.json").is_file()
