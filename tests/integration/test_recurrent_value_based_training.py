"""Recurrent (GRU) VDN and QMIX train, export and evaluate through the platform's paths."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rl_platform.training import train

BENCH = Path(__file__).resolve().parents[2] / "bench" / "matrix_game.py"


def recurrent_experiment(algo, env_id, env_config):
    return {
        "name": f"recurrent_{algo}",
        "env": {"id": env_id, "config": env_config},
        "algorithm": {
            "id": algo,
            "shared_policy": True,
            "hyperparams": {
                "recurrent": True,
                "rnn_hidden_dim": 16,
                "max_seq_len": 8,
                "num_steps_sampled_before_learning_starts": 0,
                "train_batch_size_per_learner": 4,
                "target_network_update_freq": 10,
                "training_intensity": 1.0,
            },
        },
        "resources": {
            "num_env_runners": 1,
            "num_cpus_per_env_runner": 0.5,
            "rollout_fragment_length": 20,
        },
        "stop": {"training_iteration": 2},
        "checkpoint": {"every": 2},
        "evaluation": {"every": 0},
    }


@pytest.mark.parametrize(
    ("algo", "env_id", "env_config"),
    [
        ("qmix", "two_step_game", {}),
        ("vdn", "two_step_game", {}),
        ("qmix", "rendezvous", {"discrete": True}),
        ("vdn", "rendezvous", {"discrete": True}),
    ],
)
def test_recurrent_training_through_rlp_train_exports_a_stateful_policy(
    tmp_path, ray_address, algo, env_id, env_config
):
    from rl_platform.checkpoints import load_policy
    from rl_platform.evaluation.policy import TrainedPolicy, policy_scores

    result = train(recurrent_experiment(algo, env_id, env_config), output=tmp_path)
    assert result.status == "finished" and result.iterations == 2
    module = load_policy(result.best_checkpoint, "shared")
    assert module.is_stateful() and module.q_net.rnn.hidden_size == 16
    policy = TrainedPolicy(result.best_checkpoint)
    n = len(policy.agents)
    obs_dim = module.observation_space["obs"].shape[0] - n  # the agent id is appended
    obs = np.zeros((3, n, obs_dim), np.float32)
    first = policy.actions(obs)
    assert first.shape == (3, n)
    hidden = policy._states[policy.agents[0]]["h"].clone()
    policy.actions(obs)  # the state moves on within an episode...
    assert not np.allclose(hidden.numpy(), policy._states[policy.agents[0]]["h"].numpy())
    policy.reset()  # ...and starts over for the next
    np.testing.assert_array_equal(policy.actions(obs), first)
    scores = policy_scores(result.best_checkpoint, episodes=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    if env_id == "two_step_game":
        assert set(np.round(scores, 4)) <= {0.0, 1.0, 7.0, 8.0}


@pytest.mark.slow
def test_recurrent_qmix_finds_the_two_step_optimum(ray_address):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: extra threads only contend (as in the bench)
    spec = importlib.util.spec_from_file_location("matrix_game_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    try:
        returns = [bench.run("qmix", s, 60, recurrent=True)["greedy_return"] for s in (0, 1)]
    finally:
        torch.set_num_threads(threads)
    assert returns == [8.0, 8.0]
