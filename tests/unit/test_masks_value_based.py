"""Action masks in IQL, VDN, QMIX and MADDPG without Ray: acting, targets, replay."""

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode

from rl_platform.algorithms.maddpg import MADDPGActorModule, MADDPGCriticModule, maddpg_losses
from rl_platform.algorithms.mixers import (
    double_q_next_values,
    mask_values,
    random_allowed,
    sequence_td_loss,
)
from rl_platform.algorithms.qmix import (
    MIXER_ID,
    AgentQModule,
    MixerModule,
    ValueDecompositionLearner,
)
from rl_platform.algorithms.replay import JointReplayBuffer, SequenceReplayBuffer
from rl_platform.config.algorithms import IQLParams, QMIXParams, VDNParams

A, OBS, STATE, SAMPLES = 5, 4, 3, 10_000
VALUE_BASED = {"iql": IQLParams, "vdn": VDNParams, "qmix": QMIXParams}


def obs_space():
    return gym.spaces.Dict(
        {
            "obs": gym.spaces.Box(-1, 1, (OBS,), np.float32),
            "state": gym.spaces.Box(-1, 1, (STATE,), np.float32),
            "action_mask": gym.spaces.Box(0, 1, (A,), np.float32),
        }
    )


def random_masks(rows, seed=0, lead=()):
    """0/1 float masks (*lead, rows, A), each allowing at least one action; action 0 rarely."""
    rng = np.random.default_rng(seed)
    masks = (rng.random((*lead, rows, A)) < 0.5).astype(np.float32)
    masks[..., 0] = rng.random((*lead, rows)) < 0.1
    empty = ~masks.any(-1)
    masks[empty, 1 + rng.integers(A - 1, size=int(empty.sum()))] = 1.0
    return torch.from_numpy(masks)


def batch_of(masks, state=None):
    lead = masks.shape[:-1]
    obs = {
        "obs": torch.randn(*lead, OBS),
        "state": torch.randn(*lead, STATE),
        "action_mask": masks,
    }
    batch = {Columns.OBS: obs}
    if state is not None:
        batch[Columns.STATE_IN] = state
    return batch


def prefer_action_zero(net):
    """Make the last layer's action 0 the greedy one everywhere (the mask must overrule it)."""
    last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias.zero_()
        last.bias[0] = 100.0


def q_module(algorithm, recurrent=False, epsilon=0.5):
    config = VALUE_BASED[algorithm]().model_dump(mode="json")
    module = AgentQModule(
        observation_space=obs_space(),
        action_space=gym.spaces.Discrete(A),
        inference_only=True,
        model_config={
            "fcnet_hiddens": [16],
            "epsilon": epsilon,
            "recurrent": recurrent,
            "rnn_hidden_dim": config["rnn_hidden_dim"],
        },
    )
    net = module.q_net.fc2 if recurrent else module.q_net
    prefer_action_zero(net)
    return module


def assert_allowed(actions, masks):
    taken = masks.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    assert (taken == 1).all(), f"{int((taken == 0).sum())} masked actions taken"


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("algorithm", sorted(VALUE_BASED))
def test_value_based_agents_never_act_masked(algorithm, recurrent):
    torch.manual_seed(0)
    module = q_module(algorithm, recurrent)
    masks = random_masks(SAMPLES, seed=1)
    state = None
    if recurrent:  # as on an env runner: a time axis of 1 and STATE_IN
        masks = masks[:, None]
        state = {"h": torch.zeros(SAMPLES, module.rnn_hidden_dim)}
    batch = batch_of(masks, state)
    explored = module.forward_exploration(batch, t=0)[Columns.ACTIONS]
    assert_allowed(explored, masks)
    out = module.forward_inference(batch)
    assert_allowed(out[Columns.ACTIONS], masks)
    # What evaluation reads (the argmax of the returned Q values) is allowed too.
    assert_allowed(out[Columns.ACTION_DIST_INPUTS].argmax(-1), masks)
    # The test has teeth: unmasked, the greedy action is the often-masked action 0.
    unmasked = dict(batch, **{Columns.OBS: {k: v for k, v in batch[Columns.OBS].items()}})
    del unmasked[Columns.OBS]["action_mask"]
    assert (module.forward_inference(unmasked)[Columns.ACTIONS] == 0).all()
    assert (masks[..., 0] == 0).float().mean() > 0.8


def test_epsilon_random_actions_are_uniform_over_allowed_ones():
    torch.manual_seed(0)
    module = q_module("qmix", epsilon=1.0)
    masks = torch.zeros(SAMPLES, A)
    masks[:, 1] = masks[:, 3] = masks[:, 4] = 1.0
    actions = module.forward_exploration(batch_of(masks))[Columns.ACTIONS]
    counts = torch.bincount(actions, minlength=A).float() / SAMPLES
    assert counts[0] == counts[2] == 0
    torch.testing.assert_close(counts[[1, 3, 4]], torch.full((3,), 1 / 3), atol=0.03, rtol=0)


def test_without_masks_agents_act_as_before():
    torch.manual_seed(0)
    module = AgentQModule(
        observation_space=gym.spaces.Dict(
            {"obs": obs_space()["obs"], "state": obs_space()["state"]}
        ),
        action_space=gym.spaces.Discrete(A),
        model_config={"fcnet_hiddens": [8], "epsilon": 1.0},
    )
    batch = {Columns.OBS: {"obs": torch.randn(SAMPLES, OBS), "state": torch.randn(SAMPLES, 3)}}
    q = module.q_values(batch[Columns.OBS]["obs"])
    out = module.forward_inference(batch)
    torch.testing.assert_close(out[Columns.ACTION_DIST_INPUTS], q)
    actions = module.forward_exploration(batch)[Columns.ACTIONS]
    assert set(actions.tolist()) == set(range(A))


def test_helpers_treat_an_all_zero_mask_as_all_allowed():
    values = torch.tensor([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0]])
    masks = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    masked = mask_values(values, masks)
    assert masked.argmax(-1).tolist() == [2, 1]
    assert torch.isfinite(masked.max(-1).values).all()
    assert mask_values(values, None) is values
    drawn = random_allowed(torch.zeros(4000, dtype=torch.long), 3, masks[:1].expand(4000, 3))
    assert set(drawn.tolist()) == {0, 2}


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize("double_q", [True, False])
def test_q_target_max_is_over_allowed_actions_only(double_q):
    # The masked action 2 has the largest Q (online and target) in both rows.
    next_online = torch.tensor([[0.0, 1.0, 9.0], [3.0, 1.0, 9.0]])
    next_target = torch.tensor([[10.0, 20.0, 99.0], [4.0, 30.0, 99.0]])
    next_mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    values = double_q_next_values(next_online, next_target, double_q, next_mask=next_mask)
    # Double Q: the online net's allowed argmax (1, then 0) valued by the target net;
    # plain: the target net's max over allowed actions.
    expected = [20.0, 4.0] if double_q else [20.0, 30.0]
    torch.testing.assert_close(values, torch.tensor(expected))
    assert (double_q_next_values(next_online, next_target, double_q) == 99.0).all()


def constant_q_module(q):
    """An agent module whose online and target Q are `q` (A,) on every observation."""
    module = AgentQModule(
        observation_space=obs_space(),
        action_space=gym.spaces.Discrete(len(q)),
        model_config={"fcnet_hiddens": []},
    )
    with torch.no_grad():
        for net in (module.q_net, module._target_q_net):
            net[-1].weight.zero_()
            net[-1].bias.copy_(torch.as_tensor(q))
    return module


class _Metrics:
    def __init__(self):
        self.logged = {}

    def log_value(self, key, value, **kwargs):
        self.logged[key] = value


def learner(mixer, agent_module, n_agents=2):
    """A ValueDecompositionLearner with its modules and config, without Ray's Learner setup."""
    mixer_module = MixerModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (STATE,), np.float32),
        action_space=gym.spaces.Box(-np.inf, np.inf, (n_agents,), np.float32),
        model_config={"mixer": mixer, "n_agents": n_agents, "state_dim": STATE},
    )
    out = ValueDecompositionLearner.__new__(ValueDecompositionLearner)
    out._module = {"shared": agent_module, MIXER_ID: mixer_module}
    out._agent_modules = {"shared": list(range(n_agents))}
    out._n_agents = n_agents
    out.config = SimpleNamespace(gamma=0.5, double_q=True, team_reduce="sum", recurrent=False)
    out.metrics = _Metrics()
    return out


@pytest.mark.parametrize("mixer", ["none", "vdn"])
def test_learner_targets_use_the_replayed_next_mask(mixer):
    module = constant_q_module([0.0, 1.0, 5.0])
    b, n = 4, 2
    data = {
        "obs": torch.randn(b, n, OBS),
        "next_obs": torch.randn(b, n, OBS),
        "actions": torch.zeros(b, n, dtype=torch.long),
        "rewards": torch.ones(b, n),
        "mask": torch.ones(b, n),
        "agent_terminated": torch.zeros(b, n),
        "terminated": torch.zeros(b),
        "state": torch.randn(b, STATE),
        "next_state": torch.randn(b, STATE),
    }
    unmasked = learner(mixer, module)
    unmasked.compute_losses(fwd_out={}, batch={MIXER_ID: data})
    masked = learner(mixer, module)
    next_mask = torch.tensor([1.0, 1.0, 0.0]).expand(b, n, 3)
    masked.compute_losses(fwd_out={}, batch={MIXER_ID: {**data, "next_action_mask": next_mask}})
    # Per agent r + gamma max_allowed Q(s') = 1 + 0.5 * 1 (not 0.5 * 5); VDN sums 2 agents.
    per_agent_masked, per_agent_all = 1.0 + 0.5 * 1.0, 1.0 + 0.5 * 5.0
    scale = 1 if mixer == "none" else n
    target = (MIXER_ID, "target_mean")
    assert masked.metrics.logged[target] == pytest.approx(scale * per_agent_masked)
    assert unmasked.metrics.logged[target] == pytest.approx(scale * per_agent_all)


def test_recurrent_td_loss_targets_max_over_allowed_actions():
    b, t, n = 1, 2, 2
    q = torch.tensor([0.0, 1.0, 5.0]).expand(b, t + 1, n, 3)
    action_mask = torch.ones(b, t + 1, n, 3)
    action_mask[:, 1:, :, 2] = 0.0  # the next observations mask the best action
    data = {
        "actions": torch.zeros(b, t, n, dtype=torch.long),
        "rewards": torch.ones(b, t, n),
        "mask": torch.ones(b, t, n),
        "agent_terminated": torch.zeros(b, t, n),
        "terminated": torch.zeros(b, t),
        "valid": torch.ones(b, t),
        "state": torch.zeros(b, t + 1, STATE),
    }
    plain = sequence_td_loss(q, q, data, None, 0.5)
    masked = sequence_td_loss(q, q, {**data, "action_mask": action_mask}, None, 0.5)
    torch.testing.assert_close(plain["targets"], torch.full((b, t, n), 1.0 + 0.5 * 5.0))
    torch.testing.assert_close(masked["targets"], torch.full((b, t, n), 1.0 + 0.5 * 1.0))


# --------------------------------------------------------------------------- replay

AGENTS = ["a0", "a1"]


def mask_at(t, i):
    mask = np.zeros(A, np.float32)
    mask[(t + i) % A] = mask[(t + i + 2) % A] = 1.0
    return mask


def observation(t):
    return {
        a: {
            "obs": np.full(OBS, t, np.float32),
            "state": np.full(STATE, t, np.float32),
            "action_mask": mask_at(t, i),
        }
        for i, a in enumerate(AGENTS)
    }


def masked_episode(steps):
    episode = MultiAgentEpisode(agent_module_ids={a: "shared" for a in AGENTS})
    episode.add_env_reset(observations=observation(0), infos={})
    for t in range(steps):
        episode.add_env_step(
            observations=observation(t + 1),
            actions={a: (t + i) % A for i, a in enumerate(AGENTS)},
            rewards={a: 1.0 for a in AGENTS},
            infos={},
            terminateds={"__all__": t == steps - 1},
            extra_model_outputs={a: {"state_out": {"h": np.zeros(8, np.float32)}} for a in AGENTS},
        )
    episode.to_numpy()
    return episode


def test_replay_keeps_each_steps_mask_and_the_next_ones():
    flat = JointReplayBuffer(10, AGENTS, STATE, seed=0).joint_transitions(masked_episode(3))
    for t in range(3):
        for i in range(2):
            np.testing.assert_array_equal(flat["action_mask"][t, i], mask_at(t, i))
            np.testing.assert_array_equal(flat["next_action_mask"][t, i], mask_at(t + 1, i))
    buffer = SequenceReplayBuffer(10, AGENTS, STATE, seed=0, seq_len=2, hidden_dim=8)
    sequences = buffer.joint_sequences(masked_episode(3))
    assert sequences["action_mask"].shape == (2, 3, 2, A)  # (S, T + 1, N, A)
    for k, start in enumerate((0, 2)):
        for j in range(3 if k == 0 else 2):  # the second sequence has 1 step (+ next obs)
            np.testing.assert_array_equal(sequences["action_mask"][k, j, 1], mask_at(start + j, 1))
    unmasked = {a: {"obs": o["obs"], "state": o["state"]} for a, o in observation(0).items()}
    episode = MultiAgentEpisode(agent_module_ids={a: "shared" for a in AGENTS})
    episode.add_env_reset(observations=unmasked, infos={})
    episode.add_env_step(
        observations=unmasked,
        actions=dict.fromkeys(AGENTS, 0),
        rewards=dict.fromkeys(AGENTS, 0.0),
        infos={},
    )
    episode.to_numpy()
    assert "action_mask" not in JointReplayBuffer(10, AGENTS, STATE, seed=0).joint_transitions(
        episode
    )


# --------------------------------------------------------------------------- MADDPG


def maddpg_actor(inference_only=False):
    module = MADDPGActorModule(
        observation_space=obs_space(),
        action_space=gym.spaces.Discrete(A),
        inference_only=inference_only,
        model_config={"fcnet_hiddens": [16]},
    )
    prefer_action_zero(module.policy_net)
    return module


def test_maddpg_actors_never_act_masked():
    torch.manual_seed(0)
    module = maddpg_actor(inference_only=True)
    masks = random_masks(SAMPLES, seed=2)
    batch = batch_of(masks)
    assert_allowed(module.forward_exploration(batch, t=0)[Columns.ACTIONS], masks)
    out = module.forward_inference(batch)
    assert_allowed(out[Columns.ACTIONS], masks)
    assert_allowed(out[Columns.ACTION_DIST_INPUTS].argmax(-1), masks)
    # The learner's Gumbel-softmax samples (hard and soft) give masked actions nothing.
    pre = module.preactivations(batch[Columns.OBS]["obs"])
    for hard in (True, False):
        module.gumbel_hard = hard
        sample = module.training_action(pre, masks)
        assert (sample[masks == 0] == 0).all()
        assert_allowed(sample.argmax(-1), masks)
    assert_allowed(module.deterministic_action(pre, masks).argmax(-1), masks)
    # Unmasked, action 0 (often masked) would be greedy.
    assert (module.deterministic_action(pre).argmax(-1) == 0).all()


def test_maddpg_losses_keep_actor_and_target_actions_to_allowed_ones():
    torch.manual_seed(0)
    n, b = 3, 64
    act = maddpg_actor()
    crit = MADDPGCriticModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (STATE,), np.float32),
        action_space=gym.spaces.Box(-np.inf, np.inf, (n * A,), np.float32),
        learner_only=True,
        model_config={"n_agents": n, "state_dim": STATE, "joint_action_dim": n * A},
    )
    only = {name: torch.zeros(b, n, A) for name in ("action_mask", "next_action_mask")}
    only["action_mask"][..., 1] = 1.0  # each step allows only action 1, the next only 3
    only["next_action_mask"][..., 3] = 1.0
    data = {
        "obs": torch.randn(b, n, OBS),
        "next_obs": torch.randn(b, n, OBS),
        "actions": torch.ones(b, n, dtype=torch.long),
        "rewards": torch.zeros(b, n),
        "mask": torch.ones(b, n),
        "agent_terminated": torch.zeros(b, n),
        "terminated": torch.zeros(b),
        "state": torch.randn(b, STATE),
        "next_state": torch.randn(b, STATE),
        **only,
    }
    gamma = 0.5
    (actor_loss,), _, stats = maddpg_losses([(act, [0, 1, 2])], crit, data, gamma, 0.0)
    one_hot = torch.nn.functional.one_hot
    next_joint = one_hot(torch.full((b, n), 3), A).float().reshape(b, 1, -1).expand(b, n, -1)
    expected_targets = gamma * crit.q_values(data["next_state"], next_joint, True)
    torch.testing.assert_close(stats["target_mean"], expected_targets.mean())
    joint = one_hot(torch.ones(b, n, dtype=torch.long), A).float().reshape(b, 1, -1)
    q_policy = crit.q_values(data["state"], joint.expand(b, n, -1))
    torch.testing.assert_close(stats["q_policy_mean"], q_policy.mean())
    actor_loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in act.policy_net.parameters())
