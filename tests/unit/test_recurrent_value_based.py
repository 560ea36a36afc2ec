"""Recurrent IQL/VDN/QMIX without Ray: sequence replay, GRU agents, the unrolled TD loss."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode

from rl_platform.algorithms.mixers import sequence_td_loss, vdn_mix
from rl_platform.algorithms.qmix import AgentQModule
from rl_platform.algorithms.replay import SequenceReplayBuffer, cut_sequences

AGENTS = ["a0", "a1"]


def observation(t):
    return {
        a: {"obs": np.full(2, t + 10 * i, np.float32), "state": np.full(3, t, np.float32)}
        for i, a in enumerate(AGENTS)
    }


def hidden(t):
    return {
        a: {"state_out": {"h": np.full(4, t + 10 * i, np.float32)}} for i, a in enumerate(AGENTS)
    }


def step(episode, t, terminated=False):
    episode.add_env_step(
        observations=observation(t + 1),
        actions={a: t % 2 for a in AGENTS},
        rewards={a: float(t) for a in AGENTS},
        infos={},
        terminateds={"__all__": terminated},
        extra_model_outputs=hidden(t + 1),
    )


def episode_and_continuation():
    """Steps 0-2 of an episode, then its continuation chunk (steps 3-4, terminated)."""
    first = MultiAgentEpisode(agent_module_ids={a: "shared" for a in AGENTS})
    first.add_env_reset(observations=observation(0), infos={})
    for t in range(3):
        step(first, t)
    second = first.cut(len_lookback_buffer=1)
    for t in (3, 4):
        step(second, t, terminated=t == 4)
    first.to_numpy()
    second.to_numpy()
    return first, second


def test_cut_sequences_pads_and_masks_the_tail():
    steps, n = 5, 2
    flat = {
        "obs": np.arange(steps, dtype=np.float32)[:, None, None].repeat(n, 1),
        "next_obs": np.arange(1, steps + 1, dtype=np.float32)[:, None, None].repeat(n, 1),
        "actions": np.ones((steps, n), np.int64),
        "rewards": np.arange(steps, dtype=np.float32)[:, None].repeat(n, 1),
        "mask": np.ones((steps, n), np.float32),
        "agent_terminated": np.zeros((steps, n), np.float32),
        "state": np.arange(steps, dtype=np.float32)[:, None],
        "next_state": np.arange(1, steps + 1, dtype=np.float32)[:, None],
        "terminated": np.eye(steps, dtype=np.float32)[-1],
    }
    hidden_in = np.arange(steps, dtype=np.float32)[:, None, None].repeat(n, 1)
    out = cut_sequences(flat, hidden_in, seq_len=2)
    assert out["obs"].shape == (3, 3, n, 1) and out["actions"].shape == (3, 2, n)
    np.testing.assert_array_equal(out["valid"], [[1, 1], [1, 1], [1, 0]])
    # T + 1 observations per sequence: step t's next observation is at t + 1.
    np.testing.assert_array_equal(out["obs"][:, :, 0, 0], [[0, 1, 2], [2, 3, 4], [4, 5, 0]])
    np.testing.assert_array_equal(out["state"][:, :, 0], [[0, 1, 2], [2, 3, 4], [4, 5, 0]])
    np.testing.assert_array_equal(out["hidden0"][:, 0, 0], [0, 2, 4])
    # Padding is zero everywhere: no reward, no agent, no termination.
    assert out["rewards"][2, 1].sum() == out["mask"][2, 1].sum() == 0
    np.testing.assert_array_equal(out["terminated"], [[0, 0], [0, 0], [1, 0]])


def test_sequence_replay_reads_hidden_states_and_episode_boundaries():
    first, second = episode_and_continuation()
    buffer = SequenceReplayBuffer(10, AGENTS, state_dim=3, seed=0, seq_len=2, hidden_dim=4)
    # Before each step: zeros at the episode start, then the previous step's STATE_OUT.
    np.testing.assert_array_equal(buffer.hidden_states(first)[:, :, 0], [[0, 0], [1, 11], [2, 12]])
    # A continuation chunk starts from the STATE_OUT in its lookback buffer.
    np.testing.assert_array_equal(buffer.hidden_states(second)[:, :, 0], [[3, 13], [4, 14]])
    assert buffer.add_episodes([first, second]) == 3  # 2 + 1 sequences: none spans chunks
    data = buffer.sample(64)
    np.testing.assert_array_equal(np.unique(data["valid"].sum(1)), [1, 2])
    seq = buffer.joint_sequences(second)
    np.testing.assert_array_equal(seq["hidden0"][0, :, 0], [3, 13])
    np.testing.assert_array_equal(seq["obs"][0, :, 0, 0], [3, 4, 5])  # agent a0's obs
    np.testing.assert_array_equal(seq["terminated"], [[0, 1]])  # only the last step ends it
    assert buffer.joint_sequences(first)["terminated"].sum() == 0  # a chunk cut mid-episode


def batch(values):
    """A hand-made batch: B=1, T=2 (+1 padded step), N=2 agents, 2 actions."""
    data = {
        "actions": torch.tensor([[[0, 1], [1, 1], [0, 0]]]),
        "rewards": torch.tensor([[[1.0, 1.0], [2.0, 4.0], [9.0, 9.0]]]),
        "mask": torch.tensor([[[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]]),
        "agent_terminated": torch.zeros(1, 3, 2),
        "terminated": torch.tensor([[0.0, 1.0, 0.0]]),
        "valid": torch.tensor([[1.0, 1.0, 0.0]]),
        "state": torch.zeros(1, 4, 1),
    }
    return values, data


def test_unrolled_vdn_td_loss_on_a_hand_made_sequence():
    # Q of steps 0..3 (step 3 is padding's next observation), agents 0 and 1.
    q = torch.tensor(
        [
            [
                [[1.0, 2.0], [3.0, 4.0]],
                [[5.0, 0.0], [0.0, 6.0]],
                [[7.0, 7.0], [7.0, 7.0]],
                [[100.0, 100.0], [100.0, 100.0]],
            ]
        ]
    )
    target = q + 1.0
    q, data = batch(q)
    out = sequence_td_loss(q, target, data, lambda qs, s, t: vdn_mix(qs), gamma=0.5)
    # Step 0: chosen 1 + 4 = 5; next (step 1): online argmax 0 and 1, target 6 + 7 = 13;
    # reward mean(1, 1) = 1 -> target 1 + 0.5 * 13 = 7.5. Step 1: chosen 0 + 6 = 6, ends:
    # target mean(2, 4) = 3. Step 2 is padding and does not count.
    torch.testing.assert_close(out["targets"][0, :2], torch.tensor([7.5, 3.0]))
    torch.testing.assert_close(out["td_error"][0], torch.tensor([-2.5, 3.0, 0.0]))
    torch.testing.assert_close(out["loss"], torch.tensor((2.5**2 + 3.0**2) / 2))
    # Gradients reach the chosen Q values only.
    q.requires_grad_(True)
    sequence_td_loss(q, target, data, lambda qs, s, t: vdn_mix(qs), gamma=0.5)["loss"].backward()
    assert q.grad[0, 3].abs().sum() == 0 and q.grad[0, 2].abs().sum() == 0
    assert q.grad[0, 0, 0, 0] != 0 and q.grad[0, 0, 0, 1] == 0  # agent 0 took action 0


def test_unrolled_independent_td_loss_ignores_padding():
    q = torch.arange(16, dtype=torch.float32).reshape(1, 4, 2, 2)
    q, data = batch(q)
    out = sequence_td_loss(q, q, data, None, gamma=0.9)
    assert out["td_error"].shape == (1, 3, 2)
    # Agent 0, step 0: chosen q[0,0,0] = 0; next online argmax 1 -> 5; 1 + 0.9 * 5.
    assert out["targets"][0, 0, 0].item() == pytest.approx(1 + 0.9 * 5)
    changed = {**data, "rewards": data["rewards"].clone()}
    changed["rewards"][0, 2] = -1000.0  # padding
    assert sequence_td_loss(q, q, changed, None, gamma=0.9)["loss"] == out["loss"]


def recurrent_module(inference_only=False):
    space = gym.spaces.Dict(
        {"obs": gym.spaces.Box(-1, 1, (3,)), "state": gym.spaces.Box(-1, 1, (2,))}
    )
    return AgentQModule(
        observation_space=space,
        action_space=gym.spaces.Discrete(4),
        inference_only=inference_only,
        model_config={"recurrent": True, "rnn_hidden_dim": 8, "max_seq_len": 5, "epsilon": 0.0},
    )


def test_recurrent_agent_unroll_matches_step_by_step_acting():
    torch.manual_seed(0)
    module = recurrent_module()
    assert module.is_stateful() and module.get_initial_state()["h"].shape == (8,)
    obs = torch.randn(2, 5, 3)
    unrolled = module.q_sequence(obs, torch.zeros(2, 8))
    state = {"h": torch.zeros(2, 8)}
    for t in range(5):
        # As on an env runner: a time axis of 1, STATE_IN from the previous STATE_OUT.
        batch = {Columns.OBS: {"obs": obs[:, t : t + 1]}, Columns.STATE_IN: state}
        out = module.forward_inference(batch)
        torch.testing.assert_close(out[Columns.ACTION_DIST_INPUTS][:, 0], unrolled[:, t])
        explored = module.forward_exploration(batch)
        assert explored[Columns.ACTIONS].shape == (2, 1)
        torch.testing.assert_close(explored[Columns.ACTIONS], out[Columns.ACTIONS])
        state = out[Columns.STATE_OUT]
    # Without a time axis or state (platform evaluation): one step from zeros.
    single = module.forward_inference({Columns.OBS: {"obs": obs[:, 0]}})
    torch.testing.assert_close(single[Columns.ACTION_DIST_INPUTS], unrolled[:, 0])
    # The target network unrolls the same way (a copy until the first update).
    torch.testing.assert_close(module.q_sequence(obs, torch.zeros(2, 8), target=True), unrolled)
    assert not hasattr(recurrent_module(inference_only=True), "_target_q_net")


def test_feedforward_module_stays_stateless():
    module = AgentQModule(
        observation_space=gym.spaces.Box(-1, 1, (3,)),
        action_space=gym.spaces.Discrete(2),
        model_config={"fcnet_hiddens": [4]},
    )
    assert not module.is_stateful()
    assert isinstance(module.q_net, torch.nn.Sequential)
