"""The ICM without Ray: module shapes, learning, novelty, the reward connector, refusals."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

from rl_platform.advanced.curiosity import (
    CuriosityModule,
    CuriosityRewardConnector,
    curiosity_figures,
    curiosity_module_id,
    is_curiosity_module_id,
)
from rl_platform.config import ConfigError, CuriositySpec, load_experiment
from rl_platform.training import IterationRow

OBS_DIM = 6
DISCRETE = gym.spaces.Discrete(4)
BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def make_icm(action_space, dict_obs=False, **spec):
    box = gym.spaces.Box(0.0, 1.0, (OBS_DIM,), np.float32)
    space = gym.spaces.Dict({"obs": box, "state": box}) if dict_obs else box
    config = CuriositySpec(**{"feature_dim": 8, "hidden_sizes": (32,), **spec})
    return CuriosityModule(
        observation_space=space,
        action_space=action_space,
        learner_only=True,
        model_config={**config.model_dump(mode="json"), "obs_key": "obs" if dict_obs else None},
    )


def transitions(action_space, count, seed=0, dict_obs=False):
    """Random transitions of a deterministic toy system: s' = roll(s, a) (or s + a)."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(0, 1, (count, OBS_DIM)).astype(np.float32)
    if isinstance(action_space, gym.spaces.Discrete):
        actions = rng.integers(0, action_space.n, count)
        nxt = np.stack([np.roll(o, int(a) + 1) for o, a in zip(obs, actions)])
    else:
        actions = rng.uniform(-1, 1, (count, 2)).astype(np.float32)
        nxt = obs.copy()
        nxt[:, :2] += actions
    batch = {
        Columns.OBS: torch.as_tensor(obs),
        Columns.NEXT_OBS: torch.as_tensor(nxt),
        Columns.ACTIONS: torch.as_tensor(actions),
    }
    if dict_obs:
        for key in (Columns.OBS, Columns.NEXT_OBS):
            batch[key] = {"obs": batch[key], "state": torch.zeros_like(batch[key])}
    return batch


@pytest.mark.parametrize("action_space", [DISCRETE, BOX], ids=["discrete", "box"])
@pytest.mark.parametrize("dict_obs", [False, True], ids=["flat", "dict"])
def test_forward_shapes(action_space, dict_obs):
    icm = make_icm(action_space, dict_obs=dict_obs)
    batch = transitions(action_space, 5, dict_obs=dict_obs)
    out = icm.forward_train(batch)
    assert out[Columns.INTRINSIC_REWARDS].shape == (5,)
    assert out["phi"].shape == out["next_phi"].shape == (5, 8)
    assert (out[Columns.INTRINSIC_REWARDS] >= 0).all()
    forward, inverse = icm.losses(batch, out)
    assert forward.shape == inverse.shape == ()
    with pytest.raises(NotImplementedError, match="learner-only"):
        icm.forward_inference(batch)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks: threads only contend with each other on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(icm, batch, steps=300):
    optimizer = torch.optim.Adam(icm.parameters(), lr=3e-3)
    b = icm.model_config["forward_loss_weight"]
    for _ in range(steps):
        forward, inverse = icm.losses(batch, icm.forward_train(batch))
        optimizer.zero_grad()
        (b * forward + (1 - b) * inverse).backward()
        optimizer.step()


@pytest.mark.parametrize("action_space", [DISCRETE, BOX], ids=["discrete", "box"])
def test_forward_and_inverse_losses_fall_on_fixed_transitions(action_space):
    torch.manual_seed(0)
    icm = make_icm(action_space)
    batch = transitions(action_space, 64)
    with torch.no_grad():
        before = [float(x) for x in icm.losses(batch, icm.forward_train(batch))]
    train(icm, batch)
    with torch.no_grad():
        after = [float(x) for x in icm.losses(batch, icm.forward_train(batch))]
    assert after[0] < 0.5 * before[0], (before, after)  # forward
    assert after[1] < 0.2 * before[1], (before, after)  # inverse


def test_intrinsic_reward_is_larger_for_unseen_transitions():
    torch.manual_seed(0)
    icm = make_icm(DISCRETE)
    seen = transitions(DISCRETE, 64, seed=1)
    train(icm, seen)
    unseen = transitions(DISCRETE, 64, seed=2)
    unseen[Columns.OBS] = unseen[Columns.OBS] + 2.0  # states far from anything trained on
    unseen[Columns.NEXT_OBS] = unseen[Columns.NEXT_OBS] + 2.0
    assert icm.intrinsic_rewards(unseen).mean() > 3 * icm.intrinsic_rewards(seen).mean()


def test_loss_mask_leaves_out_bootstrap_steps():
    icm = make_icm(DISCRETE)
    batch = transitions(DISCRETE, 6)
    batch[Columns.LOSS_MASK] = torch.tensor([True, True, True, False, False, False])
    masked = icm.losses(batch, icm.forward_train(batch))
    first = {k: v[:3] for k, v in batch.items() if k != Columns.LOSS_MASK}
    torch.testing.assert_close(masked, icm.losses(first, icm.forward_train(first)))


def test_connector_adds_weighted_normalized_intrinsic_reward():
    weight = 0.5
    icm = make_icm(DISCRETE, dict_obs=True, weight=weight)
    batch = transitions(DISCRETE, 6, dict_obs=True)
    rewards = torch.tensor([0.0, 1.0, 0.0, 0.0, 2.0, 0.0])
    mask = torch.tensor([True, True, True, True, True, False])
    batch.update({Columns.REWARDS: rewards.clone(), Columns.LOSS_MASK: mask})
    raw = icm.intrinsic_rewards(batch)
    metrics = MetricsLogger()
    out = CuriosityRewardConnector()(
        rl_module={"shared": None, "icm_shared": icm},
        batch={"shared": batch},
        episodes=[],
        metrics=metrics,
    )
    scale = raw[mask].double().mean()  # the running mean after this first batch
    expected = rewards + torch.where(mask, weight * raw / scale, torch.zeros(6)).float()
    torch.testing.assert_close(out["shared"][Columns.REWARDS], expected)
    assert out["shared"][Columns.REWARDS][5] == 0.0  # the bootstrap step gets nothing
    icm_batch = out["icm_shared"]
    assert icm_batch[Columns.OBS] is batch[Columns.OBS]
    assert icm_batch[Columns.LOSS_MASK] is mask
    assert float(icm.reward_count) == 5
    logged = metrics.reduce()["icm_shared"]
    assert logged["extrinsic_reward"].peek() == pytest.approx(0.6)
    assert logged["intrinsic_reward"].peek() == pytest.approx(float(raw[mask].mean()), rel=1e-5)
    assert logged["intrinsic_reward_weighted"].peek() == pytest.approx(weight, rel=1e-5)


def test_connector_leaves_policies_without_an_icm_alone():
    rewards = torch.ones(3)
    batch = {"a": {Columns.REWARDS: rewards}}
    out = CuriosityRewardConnector()(rl_module={"a": None}, batch=batch, episodes=[])
    assert out == {"a": {Columns.REWARDS: rewards}}


def test_running_mean_counts_every_reward():
    icm = make_icm(DISCRETE)
    assert float(icm.reward_scale()) == 1.0
    icm.update_reward_stats(torch.tensor([1.0, 3.0]))
    icm.update_reward_stats(torch.tensor([5.0, 7.0, 9.0, 11.0]))
    assert float(icm.reward_scale()) == pytest.approx(6.0)
    assert {"reward_count", "reward_mean"} <= set(icm.state_dict())


def test_module_ids_and_figures():
    assert curiosity_module_id("shared") == "icm_shared"
    assert is_curiosity_module_id("icm_agent_0") and not is_curiosity_module_id("agent_0")
    learners = {
        "icm_a": {"intrinsic_reward": 1.0, "forward_loss": 0.2},
        "icm_b": {"intrinsic_reward": 3.0, "forward_loss": 0.4},
        "a": {"intrinsic_reward": 100.0},
        "__all_modules__": {"num_trainable_parameters": 5},
    }
    figures = curiosity_figures(learners)
    assert figures["intrinsic_reward"] == 2.0
    assert figures["forward_loss"] == pytest.approx(0.3)
    assert np.isnan(figures["extrinsic_reward"])


def test_metrics_csv_gets_curiosity_columns():
    row = IterationRow(1, 100, 0.0, 10.0, 1.0, curiosity={"intrinsic_reward": 0.5})
    assert row.csv_row(["env"])["curiosity_intrinsic_reward"] == 0.5
    assert "curiosity_intrinsic_reward" not in IterationRow(1, 100, 0.0, 10.0, 1.0).csv_row([])


def experiment(algorithm, **env_config):
    return {
        "name": "curious",
        "env": {"id": "landmark", "config": env_config},
        "algorithm": {"id": algorithm},
        "curiosity": {"weight": 0.01},
        "stop": {"training_iteration": 1},
    }


@pytest.mark.parametrize("algorithm", ["ppo", "mappo", "ippo"])
def test_ppo_family_accepts_curiosity(algorithm):
    loaded = load_experiment(experiment(algorithm, discrete=False))
    assert loaded.curiosity.weight == 0.01


@pytest.mark.parametrize("algorithm", ["iql", "vdn", "qmix", "maddpg"])
def test_other_algorithms_are_refused(algorithm):
    with pytest.raises(ConfigError, match=f"curiosity: algorithm '{algorithm}' is not supported"):
        load_experiment(experiment(algorithm))


def test_bad_curiosity_fields_are_refused():
    data = experiment("ppo")
    data["curiosity"] = {"forward_loss_weight": 1.5}
    with pytest.raises(ConfigError, match="forward_loss_weight"):
        load_experiment(data)


class MultiDiscreteEnv:
    """Just what check() reads of an env: agents and their spaces."""

    def __init__(self, config):
        self.possible_agents = ["a"]
        self.observation_spaces = {"a": gym.spaces.Box(0, 1, (3,))}
        self.action_spaces = {"a": gym.spaces.MultiDiscrete([2, 2])}


def test_unsupported_action_spaces_are_refused():
    from rl_platform.advanced.curiosity import check

    loaded = load_experiment(experiment("ppo"))
    with pytest.raises(ValueError, match="acts in a MultiDiscrete"):
        check(loaded, MultiDiscreteEnv)


@pytest.mark.parametrize("algorithm", ["ppo", "ippo"])
def test_learners_build_the_icm_and_env_runners_do_not(algorithm):
    from rl_platform.builder import build_algorithm_config

    config = build_algorithm_config(load_experiment(experiment(algorithm)))
    env = config.env(dict(config.env_config))
    learner = config.get_multi_rl_module_spec(env=env, inference_only=False)
    runner = config.get_multi_rl_module_spec(env=env, inference_only=True)
    assert set(learner.rl_module_specs) == {"shared", "icm_shared"}
    assert set(runner.rl_module_specs) == {"shared"}
    icm = learner.rl_module_specs["icm_shared"]
    assert icm.learner_only and icm.module_class is CuriosityModule
    assert icm.model_config["obs_key"] == ("obs" if algorithm == "ippo" else None)
    assert config.learner_class.__name__.startswith("Curiosity")
