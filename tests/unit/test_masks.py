"""Action masks: what modules see, masked logits, the batched sampler, evaluation, serving."""

import gymnasium as gym
import numpy as np
import pytest

from rl_platform.envs.pettingzoo import PettingZooEnv
from rl_platform.sampling import GlobalStateEnv, GlobalStateObservations, with_one_hot

SOURCE = "pettingzoo:rl_platform.envs.masked_choice:parallel_env"


def masked_choice(mask_in="obs", **kwargs):
    return {"source": SOURCE, "mask_in": mask_in, **kwargs}


def global_state_env(mask_in="obs", agent_id=True, **kwargs):
    return GlobalStateEnv(
        {
            "env_id": "masked_choice",
            "env_config": masked_choice(mask_in, **kwargs),
            "agent_id": agent_id,
        }
    )


@pytest.mark.parametrize("mask_in", ["obs", "info"])
def test_the_adapter_gives_rllibs_convention_for_both_pettingzoo_conventions(mask_in):
    env = PettingZooEnv(masked_choice(mask_in))
    space = env.observation_spaces["player_0"]
    assert set(space.spaces) == {"observations", "action_mask"}
    assert space["action_mask"].shape == (5,)
    obs, infos = env.reset(seed=3)
    for _ in range(4):
        for value in obs.values():
            assert space.contains(value)
            assert value["action_mask"].any()
            # the mask is the env's own: its feature vector starts with it
            np.testing.assert_array_equal(value["action_mask"], value["observations"][:5])
        obs, _, _, _, infos = env.step({a: 1 for a in obs})


def test_an_env_without_masks_keeps_its_box_observations():
    env = PettingZooEnv({"source": "pettingzoo:mpe2.simple_spread_v3:parallel_env"})
    assert isinstance(env.observation_spaces["agent_0"], gym.spaces.Box)
    views = GlobalStateObservations(
        env.possible_agents, env.observation_spaces, env.state_space, agent_id=True
    )
    assert not views.masked and set(views.spaces["agent_0"].spaces) == {"obs", "state"}
    assert "action_mask" not in views.empty((2,))


@pytest.mark.parametrize("mask_in", ["obs", "info"])
def test_modules_see_obs_state_and_a_float_mask(mask_in):
    env = global_state_env(mask_in)
    space = env.observation_spaces["player_1"]
    assert set(space.spaces) == {"obs", "state", "action_mask"}
    assert space["action_mask"] == gym.spaces.Box(0.0, 1.0, (5,), np.float32)
    assert space["obs"].shape == (6 + 2,)  # features + the agent one-hot; no mask in it
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        for n, agent in enumerate(env.possible_agents):
            value = obs[agent]
            assert space.contains(value)
            assert value["action_mask"].dtype == np.float32
            assert set(np.unique(value["action_mask"])) <= {0.0, 1.0}
            np.testing.assert_array_equal(value["action_mask"], value["obs"][:5])
            assert value["obs"][6 + n] == 1.0  # its one-hot
        obs, *_ = env.step(dict.fromkeys(obs, 2))


def test_the_batched_views_have_room_for_masks_and_fill_them():
    mask = gym.spaces.Box(0, 1, (3,), np.int8)
    box = gym.spaces.Box(-1, 1, (4,), np.float32)
    spaces = {a: gym.spaces.Dict({"observations": box, "action_mask": mask}) for a in "ab"}
    views = GlobalStateObservations(["a", "b"], spaces, gym.spaces.Box(-1, 1, (8,)), True)
    out = views.empty((7, 2))
    assert out["action_mask"].shape == (7, 2, 2, 3) and out["obs"].shape == (7, 2, 2, 6)
    masks = np.random.default_rng(0).integers(0, 2, (7, 2, 2, 3)).astype(np.float32)
    views.fill(out, np.zeros((7, 2, 2, 4)), np.zeros((7, 2, 8)), masks)
    np.testing.assert_array_equal(out["action_mask"], masks)
    np.testing.assert_array_equal(out["obs"][..., 4:], np.broadcast_to(np.eye(2), (7, 2, 2, 2)))


def test_agents_with_and_without_masks_side_by_side():
    mask = gym.spaces.MultiBinary(3)
    box = gym.spaces.Box(-1, 1, (4,), np.float32)
    spaces = {"a": gym.spaces.Dict({"observations": box, "action_mask": mask}), "b": box}
    views = GlobalStateObservations(["a", "b"], spaces, gym.spaces.Box(-1, 1, (8,)), False)
    assert not views.uniform
    assert "action_mask" in views.spaces["a"].spaces
    assert "action_mask" not in views.spaces["b"].spaces


def test_other_dict_observations_and_images_are_still_refused():
    image = gym.spaces.Box(0, 1, (4, 4), np.float32)
    with pytest.raises(ValueError, match="flat Box"):
        with_one_hot(image, 2, "x")
    odd = gym.spaces.Dict({"observations": gym.spaces.Box(0, 1, (2,)), "action_mask": image})
    with pytest.raises(ValueError, match="flat 'action_mask'"):
        GlobalStateObservations(["a"], {"a": odd}, gym.spaces.Box(0, 1, (2,)), False)


def masked_module(obs_key="obs", critic_key="state", inference_only=False):
    from rl_platform.algorithms.mappo import ActorCriticModule

    spaces = {obs_key: gym.spaces.Box(-1, 1, (4,), np.float32)}
    if critic_key != obs_key:
        spaces[critic_key] = gym.spaces.Box(-1, 1, (6,), np.float32)
    spaces["action_mask"] = gym.spaces.Box(0, 1, (5,), np.float32)
    return ActorCriticModule(
        observation_space=gym.spaces.Dict(spaces),
        action_space=gym.spaces.Discrete(5),
        inference_only=inference_only,
        model_config={
            "actor_hiddens": [16],
            "critic_hiddens": [16],
            "actor_obs_key": obs_key,
            "critic_obs_key": critic_key,
            "use_value_norm": False,
        },
    )


def random_masks(rows, n_actions=5, seed=0):
    rng = np.random.default_rng(seed)
    masks = (rng.random((rows, n_actions)) < 0.4).astype(np.float32)
    masks[np.arange(rows), rng.integers(n_actions, size=rows)] = 1.0  # at least one allowed
    return masks


@pytest.mark.parametrize(
    ("obs_key", "critic_key"), [("obs", "state"), ("observations", "observations")]
)
def test_the_actor_critic_masks_its_logits_in_every_forward_pass(obs_key, critic_key):
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical

    module = masked_module(obs_key, critic_key)
    with torch.no_grad():
        module.pi_head.bias.copy_(torch.tensor([50.0, 0, 0, 0, 0]))  # action 0 tempts it
    masks = random_masks(2000)
    obs = {k: torch.randn(2000, *space.shape) for k, space in module.observation_space.items()}
    obs["action_mask"] = torch.from_numpy(masks)
    for forward in (module.forward_exploration, module.forward_inference, module.forward_train):
        logits = forward({Columns.OBS: dict(obs)})[Columns.ACTION_DIST_INPUTS]
        assert torch.isfinite(logits).all()
        dist = TorchCategorical.from_logits(logits)
        sampled = dist.sample().numpy()
        greedy = logits.argmax(-1).numpy()
        assert masks[np.arange(2000), sampled].all() and masks[np.arange(2000), greedy].all()
    # without a mask the same module acts as before (action 0 wins)
    del obs["action_mask"]
    logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert (logits.argmax(-1) == 0).all()


def test_masked_logits_keep_the_ppo_loss_finite():
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical

    module = masked_module()
    masks = torch.from_numpy(random_masks(64))
    batch = {Columns.OBS: {"obs": torch.randn(64, 4), "state": torch.randn(64, 6)}}
    batch[Columns.OBS]["action_mask"] = masks
    logits = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    dist = TorchCategorical.from_logits(logits)
    actions = dist.sample()
    loss = -(dist.logp(actions).mean() + 0.01 * dist.entropy().mean() + dist.kl(dist).mean())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def ppo_experiment(algorithm="ppo", mask_in="obs", sampler="stock", **resources):
    from rl_platform.config import load_experiment

    return load_experiment(
        {
            "name": "masks",
            "seed": 0,
            "env": {"id": "masked_choice", "config": {"mask_in": mask_in}},
            "algorithm": {"id": algorithm},
            "resources": {"num_env_runners": 0, "sampler": sampler, **resources},
            "stop": {"training_iteration": 1},
        }
    )


def test_ppo_on_a_masked_env_gets_the_masking_module_and_not_otherwise():
    from rl_platform.algorithms.mappo import ActorCriticModule
    from rl_platform.builder import build_algorithm_config

    config = build_algorithm_config(ppo_experiment(mask_in="info"))
    spec = config.rl_module_spec
    assert spec.module_class is ActorCriticModule
    assert spec.model_config["actor_obs_key"] == "observations"
    assert spec.model_config["use_value_norm"] is False
    unmasked = load_experiment_like("coverage")
    assert build_algorithm_config(unmasked).rl_module_spec.module_class is not ActorCriticModule


def load_experiment_like(env_id):
    from rl_platform.config import load_experiment

    return load_experiment(
        {
            "name": "plain",
            "env": {"id": env_id},
            "algorithm": {"id": "ppo"},
            "resources": {"num_env_runners": 0, "sampler": "stock"},
            "stop": {"training_iteration": 1},
        }
    )
