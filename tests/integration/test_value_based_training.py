"""IQL, VDN and QMIX build, train, checkpoint and export through the platform's paths."""

import numpy as np
import pytest
import torch

from rl_platform.builder import build_algorithm_config
from rl_platform.config import ConfigError, load_experiment
from rl_platform.training import train


def experiment(algo, env_id="two_step_game", env_config=None, shared=True, **overrides):
    base = {
        "name": algo,
        "env": {"id": env_id, "config": env_config or {}},
        "algorithm": {
            "id": algo,
            "shared_policy": shared,
            "network": {"hidden_sizes": [16], "activation": "relu"},
            "hyperparams": {
                "num_steps_sampled_before_learning_starts": 0,
                "train_batch_size_per_learner": 16,
                "target_network_update_freq": 10,
                "training_intensity": 1.0,
            },
        },
        "resources": {"num_env_runners": 0, "rollout_fragment_length": 20},
        "stop": {"training_iteration": 2},
        "checkpoint": {"every": 0},
        "evaluation": {"every": 0},
    }
    base.update(overrides)
    return base


def test_continuous_actions_are_refused():
    config = load_experiment(experiment("qmix", env_id="rendezvous"))
    with pytest.raises(ConfigError, match="discrete"):
        build_algorithm_config(config)


@pytest.mark.parametrize(
    ("algo", "shared"), [("iql", False), ("vdn", True), ("qmix", False), ("qmix", True)]
)
def test_trains_on_discrete_rendezvous(ray_address, algo, shared):
    config = build_algorithm_config(
        load_experiment(experiment(algo, "rendezvous", {"discrete": True}, shared=shared))
    )
    trainer = config.build_algo()
    try:
        before = {
            k: v.copy()
            for k, v in trainer.get_module("shared" if shared else "agent_0").get_state().items()
        }
        for _ in range(3):
            result = trainer.train()
        learner = result["learners"]["__mixer__"]
        assert np.isfinite(learner["total_loss"])
        assert result["num_env_steps_sampled_lifetime"] == 60
        module_ids = set(trainer.learner_group._learner.module.keys())
        agents = {"shared"} if shared else {"agent_0", "agent_1", "agent_2"}
        assert module_ids == agents | {"__mixer__"}
        # The env runner holds only the agents' inference modules, with learned weights.
        runner_module = trainer.get_module("shared" if shared else "agent_0")
        assert not hasattr(runner_module, "_target_q_net")
        after = runner_module.get_state()
        assert any(not np.allclose(before[k], after[k]) for k in before)
    finally:
        trainer.stop()


def test_target_networks_follow_the_update_frequency(ray_address):
    spec = experiment("qmix")
    spec["algorithm"]["hyperparams"]["target_network_update_freq"] = 10_000
    trainer = build_algorithm_config(load_experiment(spec)).build_algo()
    try:
        trainer.train()
        trainer.train()
        learner = trainer.learner_group._learner
        mixer = learner.module["__mixer__"].unwrapped()
        # Not yet synced: the mixer trained but its target still has the initial weights.
        assert any(
            not torch.allclose(p, q)
            for p, q in zip(mixer.mixer.parameters(), mixer._target_mixer.parameters())
        )
    finally:
        trainer.stop()


def test_qmix_through_rlp_train_with_a_remote_runner_exports_greedy_policies(tmp_path, ray_address):
    from rl_platform.evaluation.policy import TrainedPolicy, policy_scores

    spec = experiment(
        "qmix",
        resources={
            "num_env_runners": 1,
            "num_cpus_per_env_runner": 0.5,
            "rollout_fragment_length": 20,
        },
        stop={"training_iteration": 3},
        checkpoint={"every": 3},
    )
    result = train(spec, output=tmp_path)
    assert result.status == "finished" and result.iterations == 3
    export = result.best_checkpoint / "policies"
    assert sorted(p.stem for p in export.glob("*.pt")) == ["__mixer__", "shared"]
    policy = TrainedPolicy(result.best_checkpoint)
    actions = policy.actions(np.tile(np.eye(3, dtype=np.float32)[:1], (4, 2, 1)))
    assert actions.shape == (4, 2) and set(np.unique(actions)) <= {0, 1}
    scores = policy_scores(result.best_checkpoint, episodes=3)
    assert set(np.round(scores, 4)) <= {0.0, 1.0, 7.0, 8.0}


def test_qmix_checkpoint_resumes_with_its_mixer_and_a_continuing_counter(tmp_path, ray_address):
    from rl_platform.checkpoints import load_algorithm

    trainer = build_algorithm_config(load_experiment(experiment("qmix"))).build_algo()
    try:
        trainer.train()
        trainer.train()
        path = trainer.save_to_path(str(tmp_path / "ckpt"))
        saved = trainer.learner_group._learner.module["__mixer__"].get_state()
    finally:
        trainer.stop()
    restored = load_algorithm(path)
    try:
        loaded = restored.learner_group._learner.module["__mixer__"].get_state()
        assert saved and all(np.allclose(saved[k], loaded[k]) for k in saved)
        result = restored.train()  # the replay refills; training goes on
        assert result["training_iteration"] == 3
    finally:
        restored.stop()


def test_qmix_with_the_batched_sampler_learns_the_two_step_game(ray_address):
    """QMIX samples through the batched runner (its epsilon-greedy, its replay) and finds
    the two-step game's optimum (8), which needs the mixer's state-dependent weights."""
    from ray.rllib.core.columns import Columns

    from rl_platform.sampling import BatchedEnvRunner, GlobalStateEnv

    spec = experiment(
        "qmix",
        resources={"num_env_runners": 0, "num_envs_per_env_runner": 16,
                   "rollout_fragment_length": 8, "sampler": "batched"},
    )  # fmt: skip
    spec["algorithm"]["network"] = {"hidden_sizes": [64], "activation": "relu"}
    spec["algorithm"]["hyperparams"] = {
        "lr": 2e-3, "epsilon": 1.0, "train_batch_size_per_learner": 64,
        "num_steps_sampled_before_learning_starts": 256, "training_intensity": 8.0,
        "target_network_update_freq": 200, "mixing_embed_dim": 8, "hypernet_embed_dim": 8,
    }  # fmt: skip
    config = build_algorithm_config(load_experiment(spec))
    assert config.env_runner_cls is BatchedEnvRunner
    trainer = config.build_algo()
    try:
        for _ in range(60):
            result = trainer.train()
        assert result["num_env_steps_sampled_lifetime"] == 60 * 16 * 8
        env = GlobalStateEnv(trainer.config.env_config)
        module = trainer.get_module("shared")
        obs, _ = env.reset(seed=0)
        total, done = 0.0, False
        while not done:
            batch = {
                Columns.OBS: {"obs": torch.as_tensor(np.stack([o["obs"] for o in obs.values()]))}
            }
            with torch.no_grad():
                greedy = module.forward_inference(batch)[Columns.ACTIONS].numpy()
            obs, rewards, terms, truncs, _ = env.step(dict(zip(obs, greedy.tolist())))
            total += float(np.mean(list(rewards.values())))
            done = terms["__all__"] or truncs["__all__"]
        assert total == pytest.approx(8.0)
    finally:
        trainer.stop()
