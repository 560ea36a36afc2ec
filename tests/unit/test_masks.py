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
