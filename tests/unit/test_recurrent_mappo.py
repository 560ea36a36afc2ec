"""Recurrent MAPPO/IPPO without Ray: the GRU module, its state, chunking, masks, the env."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rl_platform.algorithms.recurrent_ac import ACTOR_H, CRITIC_H, RecurrentActorCriticModule
from rl_platform.builder import build_algorithm_config
from rl_platform.config import load_experiment
from rl_platform.envs.memory_cue import MemoryCueEnv

OBS, STATE, ACTIONS = 4, 6, 3


def build(action_space=None, inference_only=False, mask=False, critic_key="state", **cfg):
    spaces = {
        "obs": gym.spaces.Box(-1, 1, (OBS,), np.float32),
        "state": gym.spaces.Box(-1, 1, (STATE,), np.float32),
    }
    if mask:
        spaces["action_mask"] = gym.spaces.Box(0, 1, (ACTIONS,), np.float32)
    torch.manual_seed(0)
    return RecurrentActorCriticModule(
        observation_space=gym.spaces.Dict(spaces),
        action_space=action_space or gym.spaces.Discrete(ACTIONS),
        inference_only=inference_only,
        model_config={
            "actor_hiddens": [16],
            "critic_hiddens": [16],
            "critic_obs_key": critic_key,
            "max_seq_len": 4,
            **cfg,
        },
    )


def initial(module, b):
    return {
        k: torch.as_tensor(v).expand(b, -1).clone() for k, v in module.get_initial_state().items()
    }


def sequence(b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(b, t, OBS, generator=g),
        "state": torch.randn(b, t, STATE, generator=g),
    }


def step(obs, t):
    return {k: v[:, t : t + 1] for k, v in obs.items()}


@pytest.mark.parametrize(
    "action_space", [gym.spaces.Discrete(ACTIONS), gym.spaces.Box(-1, 1, (2,), np.float32)]
)
def test_forward_shapes_on_sequences_and_single_steps(action_space):
    module = build(action_space, rnn_hidden_dim=8)
    assert module.is_stateful()
    assert {k: v.shape for k, v in module.get_initial_state().items()} == {
        ACTOR_H: (8,),
        CRITIC_H: (8,),
    }
    obs = sequence(5, 7)
    out = module.forward_train({Columns.OBS: obs, Columns.STATE_IN: initial(module, 5)})
    width = ACTIONS if isinstance(action_space, gym.spaces.Discrete) else 4
    assert out[Columns.ACTION_DIST_INPUTS].shape == (5, 7, width)
    assert {k: v.shape for k, v in out[Columns.STATE_OUT].items()} == {
        ACTOR_H: (5, 8),
        CRITIC_H: (5, 8),
    }
    batch = {Columns.OBS: obs, Columns.STATE_IN: initial(module, 5)}
    assert module.compute_values(batch).shape == (5, 7)
    # one step without a time axis and without STATE_IN (evaluation's first call)
    one = module.forward_inference({Columns.OBS: {"obs": obs["obs"][:, 0]}})
    assert one[Columns.ACTION_DIST_INPUTS].shape == (5, width)


def test_state_is_carried_step_by_step_as_in_the_unrolled_sequence():
    learner, runner = build(), build(inference_only=True)
    runner.set_state(learner.get_state(inference_only=True))
    assert "value_norm.running_mean" not in runner.state_dict()
    assert "critic_rnn.weight_hh_l0" in runner.state_dict()  # runners carry the critic's state
    obs = sequence(3, 6)
    full = learner.forward_train({Columns.OBS: obs, Columns.STATE_IN: initial(learner, 3)})
    state, logits = initial(runner, 3), []
    for t in range(6):
        out = runner.forward_exploration({Columns.OBS: step(obs, t), Columns.STATE_IN: state})
        state = out[Columns.STATE_OUT]
        logits.append(out[Columns.ACTION_DIST_INPUTS])
    torch.testing.assert_close(torch.cat(logits, 1), full[Columns.ACTION_DIST_INPUTS])
    for key in (ACTOR_H, CRITIC_H):
        torch.testing.assert_close(state[key], full[Columns.STATE_OUT][key])
    # the history matters: the same last observation after another past acts otherwise
    other = sequence(3, 6, seed=1)
    other = {
        k: torch.cat([o[:, :-1], v[:, -1:]], 1) for (k, v), o in zip(obs.items(), other.values())
    }
    again = learner.forward_train({Columns.OBS: other, Columns.STATE_IN: initial(learner, 3)})
    assert not torch.allclose(
        again[Columns.ACTION_DIST_INPUTS][:, -1], full[Columns.ACTION_DIST_INPUTS][:, -1]
    )


def test_chunks_started_from_sampled_states_equal_the_whole_episode():
    """Training on chunk_length pieces (each from its sampled STATE_IN) loses nothing."""
    module = build()
    obs = sequence(2, 8)
    whole = module.forward_train({Columns.OBS: obs, Columns.STATE_IN: initial(module, 2)})
    values = module.compute_values({Columns.OBS: obs, Columns.STATE_IN: initial(module, 2)})
    first = {k: v[:, :4] for k, v in obs.items()}
    second = {k: v[:, 4:] for k, v in obs.items()}
    a = module.forward_train({Columns.OBS: first, Columns.STATE_IN: initial(module, 2)})
    b_batch = {Columns.OBS: second, Columns.STATE_IN: a[Columns.STATE_OUT]}
    b = module.forward_train(b_batch)
    torch.testing.assert_close(
        torch.cat([a[Columns.ACTION_DIST_INPUTS], b[Columns.ACTION_DIST_INPUTS]], 1),
        whole[Columns.ACTION_DIST_INPUTS],
    )
    torch.testing.assert_close(module.compute_values(b_batch), values[:, 4:])
    # zero padding at a chunk's end never changes the steps before it
    padded = {k: torch.cat([v[:, :3], torch.zeros_like(v[:, 3:4])], 1) for k, v in first.items()}
    c = module.forward_train({Columns.OBS: padded, Columns.STATE_IN: initial(module, 2)})
    torch.testing.assert_close(
        c[Columns.ACTION_DIST_INPUTS][:, :3], a[Columns.ACTION_DIST_INPUTS][:, :3]
    )


def test_rllib_connectors_cut_episodes_into_chunks_with_their_states():
    from ray.rllib.connectors.common import AddStatesFromEpisodesToBatch
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    module = build()  # max_seq_len 4
    n = 10
    outs = [
        {ACTOR_H: np.full(16, i, np.float32), CRITIC_H: np.full(16, -i, np.float32)}
        for i in range(n)
    ]
    episode = SingleAgentEpisode(
        observations=[np.zeros(OBS, np.float32)] * (n + 1),
        actions=[0] * n,
        rewards=[0.0] * n,
        extra_model_outputs={Columns.STATE_OUT: outs},
        len_lookback_buffer=0,
    )
    episode.to_numpy()
    batch = AddStatesFromEpisodesToBatch(as_learner_connector=True)(
        rl_module=module, batch={}, episodes=[episode]
    )
    (states,) = next(iter(batch[Columns.STATE_IN].values()))
    # chunks start at steps 0, 4, 8: the initial state, then the STATE_OUT of steps 3 and 7
    assert np.asarray(states[ACTOR_H])[:, 0].tolist() == [0.0, 3.0, 7.0]
    assert np.asarray(states[CRITIC_H])[:, 0].tolist() == [0.0, -3.0, -7.0]


def test_mask_rules_out_actions_and_masks_are_optional():
    module = build(mask=True)
    obs = sequence(4, 5)
    mask = torch.ones(4, 5, ACTIONS)
    mask[..., 0] = 0
    mask[0, :, 1] = 0
    obs["action_mask"] = mask
    out = module.forward_exploration({Columns.OBS: obs, Columns.STATE_IN: initial(module, 4)})
    logits = out[Columns.ACTION_DIST_INPUTS]
    probs = torch.softmax(logits, -1)
    assert float(probs[..., 0].max()) == 0.0 and float(probs[0, :, 1].max()) == 0.0
    torch.testing.assert_close(probs[0, :, 2], torch.ones(5))
    greedy = module.forward_inference({Columns.OBS: obs, Columns.STATE_IN: initial(module, 4)})
    assert (greedy[Columns.ACTION_DIST_INPUTS].argmax(-1) != 0).all()
    del obs["action_mask"]  # the same module without a mask key acts unmasked
    plain = module.forward_inference({Columns.OBS: obs, Columns.STATE_IN: initial(module, 4)})
    assert torch.isfinite(plain[Columns.ACTION_DIST_INPUTS]).all()


def test_ippo_critic_reads_local_obs_and_mappo_critic_the_state():
    ippo, mappo = build(critic_key="obs"), build()
    obs = sequence(2, 3)
    changed = {"obs": obs["obs"], "state": torch.randn(2, 3, STATE)}
    for module, moves in ((ippo, False), (mappo, True)):
        a = module.compute_values({Columns.OBS: obs, Columns.STATE_IN: initial(module, 2)})
        b = module.compute_values({Columns.OBS: changed, Columns.STATE_IN: initial(module, 2)})
        assert (not torch.allclose(a, b)) == moves


def test_configure_picks_the_recurrent_module_and_the_chunk_length():
    from rl_platform.builder import build_algorithm_config
    from rl_platform.config import load_experiment

    spec = {
        "name": "rmappo",
        "env": {"id": "memory_cue", "config": {}},
        "algorithm": {
            "id": "mappo",
            "hyperparams": {"recurrent": True, "chunk_length": 6, "rnn_hidden_dim": 24},
        },
    }
    config = build_algorithm_config(load_experiment(spec))
    spec = config.rl_module_spec
    module_spec = (
        next(iter(spec.rl_module_specs.values())) if hasattr(spec, "rl_module_specs") else spec
    )
    assert module_spec.module_class is RecurrentActorCriticModule
    assert module_spec.model_config["max_seq_len"] == 6
    assert module_spec.model_config["rnn_hidden_dim"] == 24


def test_memory_cue_shows_the_cue_only_first_and_pays_the_match_at_the_end():
    env = MemoryCueEnv(n_agents=2, n_cues=3, delay=3)
    obs, _ = env.reset(seed=0)
    cues = {a: int(np.argmax(o[:3])) for a, o in obs.items()}
    assert all(o[:3].sum() == 1 for o in obs.values())
    total = dict.fromkeys(cues, 0.0)
    for t in range(4):
        obs, rewards, terms, truncs, _ = env.step(cues)
        for a, r in rewards.items():
            total[a] += r
        if t < 3:
            assert all(o[:3].sum() == 0 for o in obs.values())  # blanks after the cue
            assert not any(terms.values())
    assert all(terms.values()) and env.agents == []
    assert total == dict.fromkeys(cues, 1.0)
    env.reset(seed=0)
    wrong = {a: (c + 1) % 3 for a, c in cues.items()}
    for _ in range(4):
        _, rewards, *_ = env.step(wrong)
    assert set(rewards.values()) == {0.0}


def test_batched_runner_carries_a_state_per_copy_and_agent_and_resets_it():
    """Stored STATE_OUTs equal a step-by-step replay of each episode from the initial
    state (carried across sample() calls, reset where a copy's episode ended), and a
    chunk continuing an episode looks back on the STATE_OUT before it."""
    from collections import defaultdict

    from ray.rllib.connectors.common import AddStatesFromEpisodesToBatch

    from rl_platform.sampling import BatchedEnvRunner, unsupported_reason

    exp = load_experiment(
        {
            "name": "rmappo",
            "seed": 0,
            "env": {"id": "rendezvous", "config": {"num_agents": 2, "episode_length": 5}},
            "algorithm": {
                "id": "mappo",
                "network": {"hidden_sizes": [8]},
                "hyperparams": {"recurrent": True, "chunk_length": 4},
            },
            "resources": {"num_env_runners": 0, "num_envs_per_env_runner": 3},
        }
    )
    assert unsupported_reason(exp) is None
    config = build_algorithm_config(exp)
    assert config.env_runner_cls is BatchedEnvRunner
    runner = BatchedEnvRunner(config=config)
    module = runner.module["shared"]
    chunks = []
    for steps in (2, 4, 3, 3):  # fragments cutting the 5-step episodes anywhere
        chunks += runner.sample(num_timesteps=3 * steps)
    parts = defaultdict(list)
    for chunk in chunks:
        parts[chunk.id_].append(chunk)
    whole = [p for p in parts.values() if p[-1].is_done and p[0].env_t_started == 0]
    assert len(whole) >= 6 and any(len(p) > 1 for p in whole)
    for episode in whole:
        for agent in ("agent_0", "agent_1"):
            sas = [c.agent_episodes[agent] for c in episode]
            obs = [sa.get_observations(slice(0, len(sa))) for sa in sas]
            obs = {k: np.concatenate([o[k] for o in obs]) for k in obs[0]}
            stored = np.concatenate(
                [sa.get_extra_model_outputs(Columns.STATE_OUT)[ACTOR_H] for sa in sas]
            )
            state = initial(module, 1)
            for t in range(len(stored)):
                batch = {Columns.OBS: {k: torch.as_tensor(v[t : t + 1]) for k, v in obs.items()}}
                state = module.forward_inference({**batch, Columns.STATE_IN: state})[
                    Columns.STATE_OUT
                ]
                np.testing.assert_allclose(state[ACTOR_H][0].numpy(), stored[t], atol=1e-5)
            # the learner's connector starts a continued chunk from the previous STATE_OUT
            for before, sa in zip(sas, sas[1:]):
                batch = AddStatesFromEpisodesToBatch(as_learner_connector=True)(
                    rl_module=runner.module, batch={}, episodes=[sa]
                )
                (states,) = next(iter(batch[Columns.STATE_IN].values()))
                last = before.get_extra_model_outputs(Columns.STATE_OUT, -1)[CRITIC_H]
                np.testing.assert_array_equal(np.asarray(states[CRITIC_H])[0], last)


@pytest.mark.parametrize("mask_in", ["obs", "info"])
def test_recurrent_mappo_samples_no_masked_action_on_the_batched_runner(mask_in):
    from rl_platform.sampling import BatchedEnvRunner

    exp = load_experiment(
        {
            "name": "rmappo_masked",
            "seed": 0,
            "env": {"id": "masked_choice", "config": {"mask_in": mask_in}},
            "algorithm": {
                "id": "mappo",
                "network": {"hidden_sizes": [16]},
                "hyperparams": {"recurrent": True, "chunk_length": 8},
            },
            "resources": {"num_env_runners": 0, "num_envs_per_env_runner": 8},
        }
    )
    config = build_algorithm_config(exp)
    assert config.env_runner_cls is BatchedEnvRunner
    illegal = total = 0
    for episode in BatchedEnvRunner(config=config).sample(num_timesteps=1000):
        for sa in episode.agent_episodes.values():
            actions = sa.get_actions()
            masks = sa.get_observations(slice(0, len(sa)))["action_mask"]
            illegal += int((masks[np.arange(len(actions)), actions] == 0).sum())
            total += len(actions)
            assert Columns.STATE_OUT in sa.extra_model_outputs
    assert total >= 2000 and illegal == 0
