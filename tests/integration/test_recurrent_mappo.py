"""Recurrent MAPPO/IPPO train through `rlp train`'s path, checkpoint, restore and evaluate."""

import numpy as np
import pytest

from rl_platform.training import train


def experiment(algo, env_id="rendezvous", env_config=None, **overrides):
    return {
        "name": f"recurrent_{algo}",
        "env": {"id": env_id, "config": env_config or {}},
        "algorithm": {
            "id": algo,
            "shared_policy": True,
            "network": {"hidden_sizes": [16]},
            "hyperparams": {
                "recurrent": True,
                "chunk_length": 8,
                "train_batch_size_per_learner": 200,
                "minibatch_size": 100,
                "num_epochs": 2,
            },
        },
        "resources": {"num_env_runners": 1, "num_cpus_per_env_runner": 0.5},
        "stop": {"training_iteration": 2},
        "checkpoint": {"every": 2},
        "evaluation": {"every": 0},
        **overrides,
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algo", "env_id", "env_config", "sampler"),
    [("mappo", "rendezvous", {"discrete": True}, "stock"), ("ippo", "memory_cue", {}, "batched")],
)
def test_recurrent_training_checkpoints_and_exports_a_stateful_policy(
    tmp_path, ray_address, algo, env_id, env_config, sampler
):
    from rl_platform.algorithms.recurrent_ac import ACTOR_H, RecurrentActorCriticModule
    from rl_platform.checkpoints import load_policy
    from rl_platform.evaluation.policy import TrainedPolicy, policy_scores

    spec = experiment(algo, env_id, env_config)
    spec["resources"]["sampler"] = sampler
    result = train(spec, output=tmp_path)
    assert result.status == "finished" and result.iterations == 2, result.error
    module = load_policy(result.best_checkpoint, "shared")
    assert isinstance(module, RecurrentActorCriticModule) and module.is_stateful()
    assert module.model_config["max_seq_len"] == 8
    policy = TrainedPolicy(result.best_checkpoint)
    n = len(policy.agents)
    obs_dim = module.observation_space["obs"].shape[0] - n  # the agent id is appended
    obs = np.zeros((3, n, obs_dim), np.float32)
    first = policy.actions(obs)
    assert first.shape == (3, n)
    hidden = policy._states[policy.agents[0]][ACTOR_H].clone()
    policy.actions(obs)  # greedy evaluation carries the state through the episode...
    assert not np.allclose(hidden.numpy(), policy._states[policy.agents[0]][ACTOR_H].numpy())
    policy.reset()  # ...and starts over for the next
    np.testing.assert_array_equal(policy.actions(obs), first)
    scores = policy_scores(result.best_checkpoint, episodes=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()


@pytest.mark.slow
def test_restored_recurrent_mappo_has_equal_weights_and_trains_on(tmp_path, ray_address):
    import torch

    from rl_platform.builder import build_algorithm_config
    from rl_platform.checkpoints import load_algorithm
    from rl_platform.config import load_experiment

    spec = experiment("mappo", resources={"num_env_runners": 0})
    trainer = build_algorithm_config(load_experiment(spec)).build_algo()
    try:
        trainer.train()
        trainer.train()
        path = trainer.save_to_path(str(tmp_path / "ckpt"))
        saved = trainer.learner_group._learner.module["shared"].state_dict()
    finally:
        trainer.stop()
    assert "critic_rnn.weight_hh_l0" in saved and "value_norm.running_mean" in saved
    assert float(saved["value_norm.debiasing_term"]) > 0  # the value-norm learner ran
    restored = load_algorithm(path)
    try:
        loaded = restored.learner_group._learner.module["shared"].state_dict()
        for key, value in saved.items():
            torch.testing.assert_close(loaded[key], value)
        runner = restored.env_runner.module["shared"].state_dict()
        torch.testing.assert_close(
            runner["actor_rnn.weight_hh_l0"], saved["actor_rnn.weight_hh_l0"]
        )
        result = restored.train()
        assert result["training_iteration"] == 3
        assert np.isfinite(result["learners"]["shared"]["total_loss"])
    finally:
        restored.stop()
