"""MAPPO pieces without Ray: value normalization, the actor/critic split, the wrapper."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rl_platform.algorithms.mappo import ActorCriticModule, ValueNorm
from rl_platform.envs.rendezvous import RendezvousEnv
from rl_platform.sampling import GlobalStateEnv


def test_value_norm_tracks_mean_and_variance():
    norm = ValueNorm(beta=0.9)
    rng = np.random.default_rng(0)
    for _ in range(300):
        norm.update(torch.as_tensor(rng.normal(5.0, 3.0, 256), dtype=torch.float32))
    mean, var = norm.mean_var()
    assert float(mean) == pytest.approx(5.0, abs=0.3)
    assert float(var) == pytest.approx(9.0, rel=0.15)
    x = torch.tensor([-1.0, 2.0, 11.0])
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x)


def test_value_norm_statistics_are_module_state():
    norm = ValueNorm()
    norm.update(torch.ones(4))
    assert {"running_mean", "running_mean_sq", "debiasing_term"} <= set(norm.state_dict())


def build(action_space, critic_key="state", inference_only=False):
    obs = gym.spaces.Dict(
        {
            "obs": gym.spaces.Box(-1, 1, (4,), np.float32),
            "state": gym.spaces.Box(-1, 1, (6,), np.float32),
        }
    )
    return ActorCriticModule(
        observation_space=obs,
        action_space=action_space,
        inference_only=inference_only,
        model_config={"actor_hiddens": [16], "critic_hiddens": [16], "critic_obs_key": critic_key},
    )


@pytest.mark.parametrize(
    "action_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,), np.float32)]
)
def test_actor_reads_only_local_obs_and_critic_only_state(action_space):
    module = build(action_space)
    local = torch.randn(5, 4)
    a = {Columns.OBS: {"obs": local, "state": torch.randn(5, 6)}}
    b = {Columns.OBS: {"obs": local, "state": torch.randn(5, 6)}}
    out_a = module.forward_inference(a)[Columns.ACTION_DIST_INPUTS]
    out_b = module.forward_inference(b)[Columns.ACTION_DIST_INPUTS]
    torch.testing.assert_close(out_a, out_b)  # the actor never looks at the state
    assert out_a.shape == (5, 3 if isinstance(action_space, gym.spaces.Discrete) else 4)
    # inference needs no state at all (what serving will send)
    only_obs = module.forward_inference({Columns.OBS: {"obs": local}})[Columns.ACTION_DIST_INPUTS]
    torch.testing.assert_close(only_obs, out_a)
    with torch.no_grad():
        values_a, values_b = module.compute_values(a), module.compute_values(b)
    assert values_a.shape == (5,) and not torch.allclose(values_a, values_b)


def test_ippo_critic_reads_local_obs():
    module = build(gym.spaces.Discrete(3), critic_key="obs")
    local = torch.randn(5, 4)
    with torch.no_grad():
        a = module.compute_values({Columns.OBS: {"obs": local, "state": torch.randn(5, 6)}})
        b = module.compute_values({Columns.OBS: {"obs": local, "state": torch.randn(5, 6)}})
    torch.testing.assert_close(a, b)


def test_env_runner_copy_has_no_critic():
    module = build(gym.spaces.Discrete(3), inference_only=True)
    assert not hasattr(module, "critic_body") and not hasattr(module, "value_norm")


def test_global_state_wrapper_adds_state_and_agent_ids():
    env = GlobalStateEnv(
        {"env_id": "rendezvous", "env_config": {"num_agents": 3}, "agent_id": True}
    )
    inner_dim = RendezvousEnv({"num_agents": 3}).observation_spaces["agent_0"].shape[0]
    obs, _ = env.reset(seed=0)
    for i, agent in enumerate(env.possible_agents):
        assert env.observation_spaces[agent].contains(obs[agent])
        assert obs[agent]["obs"].shape == (inner_dim + 3,)
        assert obs[agent]["obs"][inner_dim:].tolist() == np.eye(3)[i].tolist()
        np.testing.assert_array_equal(obs[agent]["state"][:-3], env.state())
    env.set_task("hard")
    assert env.get_task() == "hard"
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    check_multiagent_environments(env)


def test_wrapper_passes_masks_on_as_a_third_key(monkeypatch):
    monkeypatch.setenv("RLP_TRUSTED_MODULES", "test_env_pettingzoo")
    source = "pettingzoo:test_env_pettingzoo:shrinking"
    env = GlobalStateEnv({"env_id": source, "env_config": {}})
    obs, _ = env.reset(seed=0)
    assert obs["agent_0"]["action_mask"].tolist() == [1.0, 1.0, 0.0, 0.0]
    for _ in range(3):
        obs, *_ = env.step(dict.fromkeys(env.agents, 0))
    assert set(obs) == {"agent_0", "agent_1"}  # agent_2 left: the others keep their masks
    assert all(set(value) == {"obs", "state", "action_mask"} for value in obs.values())


def test_gaussian_mean_starts_at_the_box_center_and_never_leaves_the_box():
    module = build(gym.spaces.Box(np.array([0.0, -2.0]), np.array([1.0, 6.0]), dtype=np.float32))
    batch = {Columns.OBS: {"obs": torch.zeros(1, 4)}}
    mean = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS][:, :2]
    torch.testing.assert_close(mean, torch.tensor([[0.5, 2.0]]), atol=0.05, rtol=0)
    with torch.no_grad():
        module.pi_head.bias.fill_(1e3)  # a head pushed far out of the box
    far = {Columns.OBS: {"obs": 1e3 * torch.randn(8, 4)}}
    mean = module.forward_inference(far)[Columns.ACTION_DIST_INPUTS][:, :2]
    assert (mean >= torch.tensor([0.0, -2.0])).all() and (mean <= torch.tensor([1.0, 6.0])).all()


def test_sigmoid_tanh_is_tanh_with_its_gradient():
    from rl_platform.algorithms.mappo import SigmoidTanh

    x = torch.linspace(-20.0, 20.0, 4001, requires_grad=True)
    y = SigmoidTanh()(x)
    torch.testing.assert_close(y, torch.tanh(x), atol=3e-7, rtol=0)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, 1.0 - torch.tanh(x.detach()) ** 2, atol=1e-6, rtol=0)
