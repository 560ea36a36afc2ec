"""MAPPO on a VMAS scenario through `rlp train`'s path, on a remote batched runner."""

import pytest
from batched import train_on_batched_runner

pytest.importorskip("vmas")


def test_mappo_on_vmas_navigation_runs_on_the_batched_runner(tmp_path, ray_address, caplog):
    """One VMAS world of 8 copies per runner: no fallback, episodes of at most 50 steps, per-agent
    returns, finite learning figures."""
    config = {
        "name": "vmas_navigation",
        "seed": 0,
        "env": {"id": "vmas:navigation", "config": {"n_agents": 2, "max_steps": 50}},
        "algorithm": {
            "id": "mappo",
            "shared_policy": True,
            "hyperparams": {
                "train_batch_size_per_learner": 400,
                "minibatch_size": 200,
                "num_epochs": 1,
            },
        },
        "resources": {"num_env_runners": 1, "num_envs_per_env_runner": 8, "sampler": "batched"},
        "stop": {"training_iteration": 2},
        "checkpoint": {"every": 0},
    }
    runners = train_on_batched_runner(config, tmp_path, caplog, copies=8)
    assert runners["num_episodes_lifetime"] >= 8  # 8 copies x 50-step episodes, 2 x 400 steps
    assert 0 < runners["episode_len_mean"] <= 50
    assert set(runners["agent_episode_returns_mean"]) == {"agent_0", "agent_1"}
