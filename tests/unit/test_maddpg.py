"""MADDPG's networks and losses (centralized critics, Gumbel-softmax, squashing), no Ray."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rl_platform.algorithms.maddpg import (
    CentralCritics,
    MADDPGActorModule,
    MADDPGCriticModule,
    gumbel_softmax_action,
    joint_actions_with_own,
    maddpg_losses,
    shared_joint_actions,
    squash_to_box,
)
from rl_platform.algorithms.mixers import soft_update
from rl_platform.algorithms.replay import JointReplayBuffer

N, OBS, STATE = 3, 4, 5


def actor(action_space, obs_dim=OBS, **config):
    obs_space = gym.spaces.Dict(
        {
            "obs": gym.spaces.Box(-1, 1, (obs_dim,), np.float32),
            "state": gym.spaces.Box(-1, 1, (STATE,), np.float32),
        }
    )
    return MADDPGActorModule(
        observation_space=obs_space,
        action_space=action_space,
        inference_only=False,
        model_config={"fcnet_hiddens": [16], "fcnet_activation": "relu", **config},
    )


def critic(action_dim, shared=True):
    return MADDPGCriticModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (STATE,), np.float32),
        action_space=gym.spaces.Box(-np.inf, np.inf, (N * action_dim,), np.float32),
        learner_only=True,
        model_config={
            "n_agents": N,
            "state_dim": STATE,
            "joint_action_dim": N * action_dim,
            "shared": shared,
            "critic_hiddens": [16],
        },
    )


@pytest.mark.parametrize("shared", [True, False])
def test_critic_sees_every_agents_action_and_the_state(shared):
    torch.manual_seed(0)
    critics = CentralCritics(N, STATE, N * 2, [16], "relu", shared=shared)
    state = torch.randn(8, STATE)
    actions = torch.rand(8, N, 2) * 2 - 1
    q = critics(state, shared_joint_actions(actions))
    assert q.shape == (8, N)
    for other in range(N):  # changing any one agent's action changes every agent's Q
        changed = actions.clone()
        changed[:, other] += 0.5
        q_changed = critics(state, shared_joint_actions(changed))
        assert (q_changed - q).abs().min() > 0
    q_state = critics(state + 1.0, shared_joint_actions(actions))
    assert (q_state - q).abs().min() > 0


def test_actor_reads_only_its_local_observation():
    torch.manual_seed(0)
    module = actor(gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    local = torch.randn(6, OBS)
    out = module.forward_inference({Columns.OBS: {"obs": local, "state": torch.randn(6, STATE)}})
    other_state = module.forward_inference(
        {Columns.OBS: {"obs": local, "state": torch.randn(6, STATE) * 10}}
    )
    torch.testing.assert_close(out[Columns.ACTIONS], other_state[Columns.ACTIONS])
    # Greedy evaluation reads the deterministic action from ACTION_DIST_INPUTS.
    torch.testing.assert_close(out[Columns.ACTION_DIST_INPUTS], out[Columns.ACTIONS])
    changed = module.forward_inference({Columns.OBS: {"obs": local + 1.0}})
    assert not torch.allclose(changed[Columns.ACTIONS], out[Columns.ACTIONS])


def test_tanh_squashing_and_exploration_stay_in_the_box():
    low, high = torch.tensor([-2.0, 0.0]), torch.tensor([1.0, 5.0])
    pre = torch.tensor([[-1e3, 1e3], [0.0, 0.0], [1e3, -1e3]])
    torch.testing.assert_close(
        squash_to_box(pre, low, high), torch.tensor([[-2.0, 5.0], [-0.5, 2.5], [1.0, 0.0]])
    )
    module = actor(
        gym.spaces.Box(np.float32([-2.0, 0.0]), np.float32([1.0, 5.0])), exploration_noise=5.0
    )
    with torch.no_grad():
        module.policy_net[-1].weight.mul_(1e3)  # saturate
    batch = {Columns.OBS: {"obs": torch.randn(256, OBS) * 3}}
    for out in (module.forward_exploration(batch), module.forward_inference(batch)):
        actions = out[Columns.ACTIONS]
        assert (actions >= low).all() and (actions <= high).all()


def test_gumbel_softmax_gives_differentiable_one_hot_actions():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0]] * 2000, requires_grad=True)
    hard = gumbel_softmax_action(logits, temperature=1.0, hard=True)
    assert set(hard.detach().unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(hard.sum(-1), torch.ones(2000))
    # Samples follow softmax(logits); the one-hot passes gradients to the logits.
    freq = hard.detach().mean(0)
    torch.testing.assert_close(freq, torch.softmax(logits[0].detach(), -1), atol=0.03, rtol=0)
    (hard * torch.tensor([0.0, 0.0, 1.0])).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    soft = gumbel_softmax_action(logits.detach()[:100], temperature=5.0, hard=False)
    assert ((soft > 0) & (soft < 1)).all()  # relaxed: strictly inside the simplex
    torch.testing.assert_close(soft.sum(-1), torch.ones(100))


def test_discrete_actor_explores_by_sampling_and_acts_greedily():
    torch.manual_seed(0)
    module = actor(gym.spaces.Discrete(5))
    batch = {Columns.OBS: {"obs": torch.randn(300, OBS)}}
    greedy = module.forward_inference(batch)
    assert torch.equal(greedy[Columns.ACTIONS], greedy[Columns.ACTION_DIST_INPUTS].argmax(-1))
    explored = module.forward_exploration(batch)[Columns.ACTIONS]
    assert explored.dtype == torch.int64 and len(explored.unique()) == 5


def test_own_action_replaces_only_the_agents_slot():
    replayed = torch.arange(N * 2, dtype=torch.float32).view(1, N, 2)
    own = -torch.ones(1, N, 2)
    joint = joint_actions_with_own(replayed, own).view(1, N, N, 2)
    for i in range(N):
        for j in range(N):
            expected = own[0, j] if i == j else replayed[0, j]
            torch.testing.assert_close(joint[0, i, j], expected)


def hand_made_batch(discrete):
    actions = torch.tensor([[1, 0, 2], [0, 0, 0]]) if discrete else torch.zeros(2, N, 2)
    return {
        "obs": torch.randn(2, N, OBS),
        "next_obs": torch.randn(2, N, OBS),
        "actions": actions,
        "rewards": torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.5]]),
        "mask": torch.ones(2, N),
        "agent_terminated": torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        "state": torch.randn(2, STATE),
        "next_state": torch.randn(2, STATE),
        "terminated": torch.tensor([0.0, 0.0]),
    }


@pytest.mark.parametrize("discrete", [False, True])
def test_td_target_on_a_hand_made_batch(discrete):
    torch.manual_seed(0)
    space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    act = actor(space)
    crit = critic(3 if discrete else 2)
    batch = hand_made_batch(discrete)
    # Give the target critic a known output: Q'(s', a') = 10 for every agent.
    for net in crit._target_critics.nets:
        torch.nn.init.zeros_(net[-1].weight)
        torch.nn.init.constant_(net[-1].bias, 10.0)
    gamma = 0.9
    _, critic_loss, stats = maddpg_losses([(act, [0, 1, 2])], crit, batch, gamma, 0.0)
    # Targets r + gamma (1 - terminated_i) 10: agent 1 of row 1 has terminated.
    expected = torch.tensor([[1.0 + 9.0, 2.0 + 9.0, 3.0 + 9.0], [-1.0 + 9.0, 0.0, 0.5 + 9.0]])
    torch.testing.assert_close(stats["target_mean"], expected.mean())
    joint = (
        torch.nn.functional.one_hot(batch["actions"], 3).float() if discrete else batch["actions"]
    )
    q = crit.q_values(batch["state"], shared_joint_actions(joint))
    torch.testing.assert_close(critic_loss, (q - expected).pow(2).mean())


def test_losses_train_each_network_only_on_its_own_objective():
    torch.manual_seed(0)
    act = actor(gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    crit = critic(2)
    batch = hand_made_batch(False)
    batch["actions"] = torch.rand(2, N, 2) * 2 - 1
    (actor_loss,), critic_loss, _ = maddpg_losses([(act, [0, 1, 2])], crit, batch, 0.95, 1e-3)
    actor_loss.backward()
    assert all(p.grad is None for p in crit.parameters())  # the critic is not pushed by -Q
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in act.policy_net.parameters())
    act.zero_grad()
    critic_loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in act.parameters())
    assert all(p.grad is not None for p in crit.critics.parameters())
    assert all(p.grad is None for p in crit._target_critics.parameters())


def test_soft_target_updates_move_tau_of_the_way():
    torch.manual_seed(0)
    crit = critic(2)
    target = crit._target_critics
    with torch.no_grad():
        for p in crit.critics.parameters():
            p.add_(1.0)
    before = [p.detach().clone() for p in target.parameters()]
    soft_update(crit.critics, target, tau=0.01)
    for p_main, p_before, p_target in zip(crit.critics.parameters(), before, target.parameters()):
        torch.testing.assert_close(p_target, 0.01 * p_main + 0.99 * p_before)


def test_replay_keeps_continuous_actions():
    buffer = JointReplayBuffer(10, ["a", "b"], state_dim=1, seed=0)
    buffer.add(
        {
            "actions": np.full((4, 2, 3), 0.5, np.float32),
            "rewards": np.zeros((4, 2), np.float32),
        }
    )
    sample = buffer.sample(5)
    assert sample["actions"].shape == (5, 2, 3) and sample["actions"].dtype == np.float32
    np.testing.assert_array_equal(sample["actions"], 0.5)
