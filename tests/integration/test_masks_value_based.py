"""QMIX, VDN, IQL (recurrent) and MADDPG train on a masked env without one illegal action,
on both samplers."""

import numpy as np
import pytest

from rl_platform.builder import build_algorithm_config
from rl_platform.config import load_experiment


def experiment(algo, mask_in="obs", sampler="auto", **hyperparams):
    return {
        "name": f"masked_{algo}",
        "seed": 0,
        "env": {"id": "masked_choice", "config": {"mask_in": mask_in}},
        "algorithm": {
            "id": algo,
            "shared_policy": True,
            "network": {"hidden_sizes": [16], "activation": "relu"},
            "hyperparams": {
                "num_steps_sampled_before_learning_starts": 0,
                "train_batch_size_per_learner": 16,
                "training_intensity": 1.0,
                **hyperparams,
            },
        },
        "resources": {"num_env_runners": 0, "rollout_fragment_length": 50, "sampler": sampler},
        "stop": {"training_iteration": 2},
        "checkpoint": {"every": 0},
        "evaluation": {"every": 0},
    }


@pytest.mark.parametrize(
    ("algo", "mask_in", "sampler", "hyperparams"),
    [
        ("qmix", "obs", "batched", {"epsilon": 0.5}),
        ("vdn", "info", "stock", {"epsilon": 0.5}),
        ("iql", "info", "stock", {"epsilon": 0.5, "recurrent": True, "max_seq_len": 5}),
        ("maddpg", "obs", "batched", {}),
    ],
)
def test_trains_with_zero_illegal_actions(ray_address, algo, mask_in, sampler, hyperparams):
    trainer = build_algorithm_config(
        load_experiment(experiment(algo, mask_in, sampler, **hyperparams))
    ).build_algo()
    runner = type(trainer.env_runner).__name__
    assert runner == ("BatchedEnvRunner" if sampler == "batched" else "MultiAgentEnvRunner")
    counts = {"steps": 0, "illegal": 0, "paid_illegal": 0}
    add = trainer.replay.add_episodes

    def counting(episodes):  # every sampled step (local runner), before the replay
        for episode in episodes:
            for single in episode.agent_episodes.values():
                rewards = np.asarray(single.get_rewards())
                counts["steps"] += len(rewards)
                counts["paid_illegal"] += int((rewards == -1.0).sum())  # what a masked action pays
                if sampler == "stock":  # the batched runner keeps no per-step infos
                    infos = single.get_infos()[1:]  # the reset's info has no action behind it
                    counts["illegal"] += sum(int(info["illegal"]) for info in infos)
        return add(episodes)

    trainer.replay.add_episodes = counting
    try:
        for _ in range(3):
            result = trainer.train()
        joint = "__critic__" if algo == "maddpg" else "__mixer__"
        assert np.isfinite(result["learners"][joint]["total_loss"])
        assert counts["steps"] >= 3 * 50
        assert counts["illegal"] == 0 and counts["paid_illegal"] == 0
        # The replay kept the masks, and every replayed action is allowed by its own.
        data = trainer.replay._data
        assert "action_mask" in data
        masks = data["action_mask"][: len(trainer.replay)]
        if masks.ndim == 4:  # sequences (S, T + 1, N, A): step t's mask is at t
            masks = masks[:, :-1]
        actions = data["actions"][: len(trainer.replay)]
        acted = data["mask"][: len(trainer.replay)] > 0
        taken = np.take_along_axis(masks, actions[..., None], axis=-1)[..., 0]
        assert acted.sum() > 0 and (taken[acted] == 1).all()
    finally:
        trainer.stop()
