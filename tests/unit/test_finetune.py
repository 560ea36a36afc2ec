"""Fine-tuning an export from served feedback (AWR), without Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from policy_exports import fresh_ppo_export

from rl_platform.checkpoints import export_policies, load_policy, read_manifest
from rl_platform.config import load_experiment
from rl_platform.evaluation.policy import TrainedPolicy
from rl_platform.serving.ab_test import CHALLENGER, CHAMPION, FeedbackStore
from rl_platform.serving.finetune import awr_weights, finetune_from_store

EXPERIMENT = {
    "name": "finetune_unit",
    "env": {"id": "rendezvous", "config": {"num_agents": 3, "episode_length": 20}},
    "algorithm": {"id": "ppo", "shared_policy": True},
}
AGENTS = ["agent_0", "agent_1", "agent_2"]
OBS_DIM = 7  # rendezvous with 3 agents: own position, 2 relative positions, time
TARGET = np.array([0.6, -0.6])


def synthetic_reward(actions: np.ndarray) -> np.ndarray:
    """Team reward of actions (..., N, 2): higher the closer every agent moves to TARGET."""
    return -np.linalg.norm(actions - TARGET, axis=-1).mean(-1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint of an untrained shared PPO module with its export."""
    torch.manual_seed(0)
    root, _ = fresh_ppo_export(tmp_path_factory.mktemp("run") / "checkpoint_000000", EXPERIMENT)
    return root


def fill(path, n, seed=0, arm=CHAMPION, obs_dim=OBS_DIM, agents=AGENTS):
    """n rewarded decisions: random observations, uniform actions, the synthetic reward."""
    rng = np.random.default_rng(seed)
    with FeedbackStore(path) as store:
        for i in range(n):
            obs = rng.uniform(-1, 1, (len(agents), obs_dim))
            acts = rng.uniform(-1, 1, (len(agents), 2))
            store.record_decision(
                f"s{seed}-{i}",
                arm,
                f"{arm}-{seed}-{i}",
                {a: o.tolist() for a, o in zip(agents, obs)},
                {a: x.tolist() for a, x in zip(agents, acts)},
            )
            store.record_feedback(f"s{seed}-{i}", float(synthetic_reward(acts)))
    return path


def greedy_actions(checkpoint) -> np.ndarray:
    obs = np.random.default_rng(99).uniform(-1, 1, (256, 3, OBS_DIM)).astype(np.float32)
    return TrainedPolicy(checkpoint).actions(obs)


def test_awr_weights():
    w = awr_weights(np.array([0.0, 1.0, 2.0]))
    assert w[0] < w[1] < w[2] and w[1] == pytest.approx(1.0)
    assert awr_weights(np.array([0.0, 0.0, 100.0]), temperature=0.01).max() == 20.0
    assert np.array_equal(awr_weights(np.array([3.0, 3.0])), [1.0, 1.0])


def test_finetune_moves_the_policy_toward_rewarded_actions(checkpoint, tmp_path):
    store = fill(tmp_path / "feedback.db", 600)
    before_state = load_policy(checkpoint, "shared").state_dict()
    result = finetune_from_store(checkpoint, store, tmp_path / "ft", epochs=30, lr=3e-3)

    assert result.out == tmp_path / "ft" / "policies"
    assert result.transitions == 600
    assert result.modules["shared"].samples == 1800  # 3 agents share the module
    assert result.loss_after < result.loss_before
    # AWR's fixed point on a team reward over uniform actions is their weighted mean,
    # about (0.21, -0.20) here (reward -0.56 vs -0.85 at the target): the greedy action
    # heads there from the untrained policy's near-zero mean.
    before, after = greedy_actions(checkpoint), greedy_actions(tmp_path / "ft")
    assert synthetic_reward(after).mean() > synthetic_reward(before).mean() + 0.1
    mean = after.reshape(-1, 2).mean(0)
    assert mean @ TARGET / (np.linalg.norm(mean) * np.linalg.norm(TARGET)) > 0.9

    manifest = read_manifest(tmp_path / "ft")
    source = read_manifest(checkpoint)
    assert manifest["agents"] == source["agents"] and manifest["env"] == source["env"]
    info = manifest["finetuned_from"]
    assert info["transitions"] == 600 and info["arm"] is None and info["epochs"] == 30
    assert info["checkpoint"] == str(checkpoint.resolve()) and info["store"] == str(store)
    # The source export is untouched.
    for key, value in load_policy(checkpoint, "shared").state_dict().items():
        assert torch.equal(value, before_state[key])


def test_finetune_is_seeded_and_filters_by_arm(checkpoint, tmp_path):
    store = fill(tmp_path / "feedback.db", 60, seed=1, arm=CHALLENGER)
    fill(store, 20, seed=2, arm=CHAMPION)
    a = finetune_from_store(checkpoint, store, tmp_path / "a", arm=CHALLENGER, epochs=2)
    b = finetune_from_store(checkpoint, store, tmp_path / "b", arm=CHALLENGER, epochs=2)
    assert a.transitions == 60 and a.loss_after == b.loss_after
    assert read_manifest(tmp_path / "a")["finetuned_from"]["arm"] == CHALLENGER
    with pytest.raises(ValueError, match="20 rewarded decisions of arm 'champion'"):
        finetune_from_store(checkpoint, store, tmp_path / "c", arm=CHAMPION)


def test_finetune_refusals(checkpoint, tmp_path):
    few = fill(tmp_path / "few.db", 10)
    with pytest.raises(ValueError, match="at least 50"):
        finetune_from_store(checkpoint, few, tmp_path / "o1")

    wide = fill(tmp_path / "wide.db", 60, obs_dim=9)
    with pytest.raises(ValueError, match="size 9.*takes 7"):
        finetune_from_store(checkpoint, wide, tmp_path / "o2")

    other = fill(tmp_path / "other.db", 60, agents=["agent_0", "agent_1"])
    with pytest.raises(ValueError, match="agents"):
        finetune_from_store(checkpoint, other, tmp_path / "o3")

    with pytest.raises(FileNotFoundError):
        finetune_from_store(checkpoint, tmp_path / "missing.db", tmp_path / "o4")
    assert not (tmp_path / "missing.db").exists()

    good = fill(tmp_path / "good.db", 60)
    finetune_from_store(checkpoint, good, tmp_path / "o5", epochs=1)
    with pytest.raises(FileExistsError):
        finetune_from_store(checkpoint, good, tmp_path / "o5", epochs=1)
    with pytest.raises(ValueError, match="arm"):
        finetune_from_store(checkpoint, good, tmp_path / "o6", arm="third")


def test_finetune_refuses_bad_actions(checkpoint, tmp_path):
    path = tmp_path / "bad.db"
    with FeedbackStore(path) as store:
        for i in range(60):
            obs = {a: [0.0] * OBS_DIM for a in AGENTS}
            store.record_decision(f"s{i}", CHAMPION, f"r{i}", obs, dict.fromkeys(AGENTS, 2))
            store.record_feedback(f"s{i}", 1.0)
    with pytest.raises(ValueError, match="actions must be"):
        finetune_from_store(checkpoint, path, tmp_path / "o")


def test_finetuned_export_round_trips(checkpoint, tmp_path):
    store = fill(tmp_path / "feedback.db", 60)
    finetune_from_store(checkpoint, store, tmp_path / "ft", epochs=1)
    files = sorted(p.name for p in (tmp_path / "ft" / "policies").iterdir())
    assert files == ["manifest.json", "shared.pt"]
    json.loads((tmp_path / "ft" / "policies" / "manifest.json").read_text())
    # Loading again as the source of another fine-tune works too.
    again = finetune_from_store(tmp_path / "ft", store, tmp_path / "ft2", epochs=1)
    assert again.transitions == 60


def test_finetune_dict_obs_module_with_agent_one_hot(tmp_path):
    """A MAPPO-style module (obs: local + agent one-hot; discrete moves) learns the good move."""
    import gymnasium as gym

    from rl_platform.algorithms.mappo import ActorCriticModule

    experiment = {**EXPERIMENT, "env": {**EXPERIMENT["env"], "config": {"discrete": True}}}
    resolved = load_experiment(experiment)
    torch.manual_seed(0)
    module = ActorCriticModule(
        observation_space=gym.spaces.Dict(
            {
                "obs": gym.spaces.Box(-2, 2, (OBS_DIM + 3,), np.float32),
                "state": gym.spaces.Box(-1, 1, (7,), np.float32),
            }
        ),
        action_space=gym.spaces.Discrete(5),
        inference_only=False,
        model_config={"actor_hiddens": [16], "critic_hiddens": [16]},
    )
    root = tmp_path / "checkpoint_000000"
    module.save_to_path(str(root / "learner_group" / "learner" / "rl_module" / "shared"))
    export_policies(root, resolved.model_dump(mode="json"))

    rng = np.random.default_rng(0)
    with FeedbackStore(tmp_path / "f.db") as store:
        for i in range(300):
            acts = rng.integers(0, 5, 3)
            obs = rng.uniform(-1, 1, (3, OBS_DIM))
            store.record_decision(
                f"s{i}",
                CHAMPION,
                f"r{i}",
                {a: o.tolist() for a, o in zip(AGENTS, obs)},
                {a: int(x) for a, x in zip(AGENTS, acts)},
            )
            store.record_feedback(f"s{i}", float((acts == 2).mean()))
    result = finetune_from_store(root, tmp_path / "f.db", tmp_path / "ft", epochs=40, lr=1e-2)
    assert result.loss_after < result.loss_before
    obs = rng.uniform(-1, 1, (64, 3, OBS_DIM)).astype(np.float32)
    assert (TrainedPolicy(root).actions(obs) == 2).mean() < 0.5
    assert (TrainedPolicy(tmp_path / "ft").actions(obs) == 2).mean() > 0.9


def test_rlp_finetune_writes_an_export_and_refuses_too_little_data(checkpoint, tmp_path):
    from typer.testing import CliRunner

    from rl_platform.cli import app

    store = fill(tmp_path / "feedback.db", 60)
    runner = CliRunner()
    args = ["finetune", str(checkpoint), "--store", str(store), "--epochs", "2"]
    result = runner.invoke(app, [*args, "--output", str(tmp_path / "ft")])
    assert result.exit_code == 0, result.output
    assert "60 transitions" in " ".join(result.output.split())
    TrainedPolicy(tmp_path / "ft")  # loads like any export
    result = runner.invoke(
        app, [*args, "--output", str(tmp_path / "x"), "--min-transitions", "100"]
    )
    assert result.exit_code == 2 and "transitions" in result.output
