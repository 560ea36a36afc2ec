"""The math of IQL/VDN/QMIX (mixers, double-DQN targets, target updates) and the tabular
Q-learner, without Ray."""

import numpy as np
import pytest
import torch

from rl_platform.algorithms.mixers import (
    QMixer,
    double_q_next_values,
    masked_mean,
    soft_update,
    td_targets,
    vdn_mix,
)
from rl_platform.algorithms.tabular import TabularQLearning
from rl_platform.envs.matrix_games import TwoStepGameEnv


@pytest.mark.parametrize("hypernet_layers", [1, 2])
def test_qmix_mixer_is_monotonic_in_every_agent_q(hypernet_layers):
    torch.manual_seed(0)
    mixer = QMixer(
        n_agents=4,
        state_dim=6,
        mixing_embed_dim=8,
        hypernet_embed_dim=16,
        hypernet_layers=hypernet_layers,
    )
    states = torch.randn(256, 6) * 3
    agent_qs = (torch.randn(256, 4) * 5).requires_grad_(True)
    q_tot = mixer(agent_qs, states)
    assert q_tot.shape == (256,)
    (grad,) = torch.autograd.grad(q_tot.sum(), agent_qs)
    assert (grad >= 0).all()
    assert (grad > 0).any()
    # Raising one agent's Q never lowers Q_tot.
    raised = agent_qs.detach().clone()
    raised[:, 2] += 1.0
    assert (mixer(raised, states) >= q_tot.detach() - 1e-5).all()


def test_qmix_mixer_weights_depend_on_the_state():
    torch.manual_seed(1)
    mixer = QMixer(n_agents=2, state_dim=3, mixing_embed_dim=8, hypernet_embed_dim=8)
    qs = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    out = mixer(qs, torch.eye(3)[:2])
    assert not torch.allclose(out[0], out[1])


def test_vdn_mixer_is_the_sum():
    qs = torch.tensor([[1.0, 2.0, -0.5], [0.0, 0.0, 3.0]])
    torch.testing.assert_close(vdn_mix(qs), torch.tensor([2.5, 3.0]))


def test_double_q_target_on_a_hand_made_batch():
    # Two transitions, three actions. The online net picks the next action, the target
    # net values it: online argmax is 2 (row 0) and 0 (row 1).
    next_online = torch.tensor([[0.0, 1.0, 5.0], [9.0, 1.0, 2.0]])
    next_target = torch.tensor([[10.0, 20.0, 3.0], [4.0, 30.0, 1.0]])
    values = double_q_next_values(next_online, next_target)
    torch.testing.assert_close(values, torch.tensor([3.0, 4.0]))
    # Without double Q: the target net's own max.
    plain = double_q_next_values(next_online, next_target, double_q=False)
    torch.testing.assert_close(plain, torch.tensor([20.0, 30.0]))
    rewards = torch.tensor([1.0, -1.0])
    terminated = torch.tensor([0.0, 1.0])
    targets = td_targets(rewards, terminated, values, gamma=0.9)
    torch.testing.assert_close(targets, torch.tensor([1.0 + 0.9 * 3.0, -1.0]))
    assert not targets.requires_grad


def test_masked_mean_ignores_absent_agents():
    values = torch.tensor([[1.0, 100.0], [3.0, 100.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert masked_mean(values, mask).item() == pytest.approx(2.0)
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0


def test_target_network_hard_and_soft_updates():
    torch.manual_seed(0)
    main, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    soft_update(main, target, tau=0.1)
    for p_main, p_before, p_target in zip(main.parameters(), before, target.parameters()):
        torch.testing.assert_close(p_target, 0.1 * p_main + 0.9 * p_before)
    soft_update(main, target, tau=1.0)
    for p_main, p_target in zip(main.parameters(), target.parameters()):
        torch.testing.assert_close(p_target, p_main)


def test_tabular_q_learning_solves_a_chain():
    # A 5-state chain: action 1 moves right, 0 moves left; reaching the end pays 1.
    learner = TabularQLearning(num_states=5, num_actions=2, seed=0)
    for _ in range(300):
        state = 0
        for _ in range(50):
            action = learner.act(state)
            next_state = min(state + 1, 4) if action == 1 else max(state - 1, 0)
            done = next_state == 4
            learner.update(state, action, float(done), next_state, done)
            state = next_state
            if done:
                break
    assert [learner.act(s, explore=False) for s in range(4)] == [1, 1, 1, 1]
    assert learner.q[3, 1] == pytest.approx(1.0, abs=0.05)
    assert learner.q[0, 1] == pytest.approx(0.99**3, abs=0.05)


def test_tabular_defaults_follow_the_seed():
    learner = TabularQLearning(3, 2)
    assert (learner.learning_rate, learner.gamma, learner.epsilon) == (0.1, 0.99, 0.1)
    with pytest.raises(ValueError):
        TabularQLearning(3, 2, learning_rate=0.0)


def test_two_step_game_pays_as_in_the_paper():
    env = TwoStepGameEnv({})
    payoffs = {}
    for first in (0, 1):
        for a0 in (0, 1):
            for a1 in (0, 1):
                obs, _ = env.reset(seed=0)
                np.testing.assert_array_equal(obs["agent_0"], [1, 0, 0])
                _, r1, t1, _, _ = env.step({"agent_0": first, "agent_1": 1 - first})
                assert r1["agent_0"] == 0.0 and not t1["__all__"]
                obs, r2, t2, tr2, _ = env.step({"agent_0": a0, "agent_1": a1})
                assert t2["__all__"] and not tr2["__all__"]
                assert r2["agent_0"] == r2["agent_1"]
                payoffs[first, a0, a1] = r2["agent_0"]
    assert all(payoffs[0, a0, a1] == 7.0 for a0 in (0, 1) for a1 in (0, 1))
    assert [payoffs[1, a0, a1] for a0 in (0, 1) for a1 in (0, 1)] == [0.0, 1.0, 1.0, 8.0]


def test_two_step_game_baselines():
    from rl_platform.evaluation.baselines import episode_scores

    assert episode_scores("two_step_game", "safe", {}, episodes=4).mean() == 7.0
    assert episode_scores("two_step_game", "optimal", {}, episodes=4).mean() == 8.0
