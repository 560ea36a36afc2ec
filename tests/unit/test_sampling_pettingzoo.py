"""PettingZoo envs under the batched sampler against B single-copy views stepped in lockstep."""

import logging

import gymnasium as gym
import numpy as np
import pytest
import torch
from pettingzoo import ParallelEnv
from ray.rllib.core.columns import Columns

from rl_platform.builder import build_algorithm_config
from rl_platform.config import load_experiment
from rl_platform.envs.pettingzoo import ParallelEnvCore, PettingZooConfig, PettingZooEnv
from rl_platform.rewards import EPISODE_INFO, TASK_INFO, episode_summary
from rl_platform.sampling import BatchedEnvRunner, GlobalStateEnv, unsupported_reason

MPE = "pettingzoo:mpe2.simple_spread_v3:parallel_env"


class LeavingEnv(ParallelEnv):
    """Three agents; each leaves at a step drawn at reset (or stays to the time limit).

    Observations, rewards and departures all come from the reset seed, so only the same
    seeds give the same episodes. The episode ends when every agent has left
    (terminated) or at `episode_length` (truncated). No ``state()``.
    """

    metadata = {"name": "leaving", "is_parallelizable": True}

    def __init__(self, episode_length: int = 6):
        self.possible_agents = ["agent_0", "agent_1", "agent_2"]
        self.episode_length = episode_length

    def observation_space(self, agent):
        return gym.spaces.Box(-10, 10, (4,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(3)

    def _obs(self, agents):
        return {a: self.rng.normal(size=4).astype(np.float32) + self.t for a in agents}

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        self.leave = dict(zip(self.agents, self.rng.integers(1, self.episode_length + 2, 3)))
        return self._obs(self.agents), {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), (actions, self.agents)
        self.t += 1
        rewards = {a: float(actions[a]) * self.rng.random() - 0.1 for a in self.agents}
        terms = {a: self.t >= self.leave[a] for a in self.agents}
        truncs = {a: self.t >= self.episode_length and not terms[a] for a in self.agents}
        obs = self._obs(self.agents)
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        return obs, rewards, terms, truncs, {a: {} for a in obs}


def leaving(**kwargs):
    return LeavingEnv(**kwargs)


class TwoSpacesEnv(LeavingEnv):
    """Agents observing different widths."""

    def observation_space(self, agent):
        return gym.spaces.Box(-10, 10, (4 if agent == "agent_0" else 5,), np.float32)


def two_spaces(**kwargs):
    return TwoSpacesEnv(**kwargs)


class MaskedEnv(LeavingEnv):
    """Agents with action masks."""

    def observation_space(self, agent):
        box = gym.spaces.Box(-10, 10, (4,), np.float32)
        return gym.spaces.Dict({"observation": box, "action_mask": gym.spaces.MultiBinary(3)})


def masked(**kwargs):
    return MaskedEnv(**kwargs)


LEAVING = f"pettingzoo:{__name__}:leaving"


@pytest.fixture(autouse=True)
def trust_this_module(monkeypatch):
    """This module's envs are named by ``pettingzoo:<this module>:...`` ids."""
    monkeypatch.setenv("RLP_TRUSTED_MODULES", __name__)


def experiment(env_id, env_config, envs, shared=True):
    return load_experiment(
        {
            "name": "pz_sampler",
            "seed": 0,
            "env": {"id": env_id, "config": env_config},
            "algorithm": {"id": "mappo", "shared_policy": shared},
            "resources": {
                "num_env_runners": 0,
                "num_envs_per_env_runner": envs,
                "sampler": "batched",
            },
            "stop": {"training_iteration": 1},
        }
    )


def by_copy(episodes, copies, steps):
    """The runner's chunks (ordered by copy, then time) as, per copy, one chunk per step."""
    per_step = [[] for _ in range(copies)]
    chunks = iter(episodes)
    for b in range(copies):
        while len(per_step[b]) < steps:
            chunk = next(chunks)
            per_step[b] += [(chunk, t) for t in range(len(chunk))]
    assert next(chunks, None) is None
    return per_step


def check_against_lockstep_views(env_id, env_config, copies, steps, seed=7):
    """Sample `steps` per copy; replay every copy on a single-copy view, same seeds/actions.

    The batched core draws each copy's reset seed from the sampler's generator, in copy
    order, at the start and whenever copies end; the views are reset with those seeds.
    Returns the finished episodes' (return, agent steps) of the reference.
    """
    exp = experiment(env_id, env_config, copies)
    config = build_algorithm_config(exp)
    assert config.env_runner_cls is BatchedEnvRunner
    runner = BatchedEnvRunner(config=config)
    runner._sampler.rng = np.random.default_rng(seed)
    episodes = runner.sample(num_timesteps=copies * steps)
    for episode in episodes:  # the fast-built episodes pass RLlib's own checks
        episode.validate()
    module = runner.module["shared"]
    dist_cls = module.get_exploration_action_dist_cls()
    per_step = by_copy(episodes, copies, steps)

    rng = np.random.default_rng(seed)
    views = [GlobalStateEnv(dict(config.env_config)) for _ in range(copies)]
    seeds = rng.integers(0, 2**31 - 1, size=copies).tolist()
    obs = [view.reset(seed=s)[0] for view, s in zip(views, seeds)]
    returns, running, finished = np.zeros(copies), np.zeros(copies, dtype=int), []
    for t in range(steps):
        done = []
        for b, view in enumerate(views):
            episode, local = per_step[b][t]
            acting = list(view.agents)
            assert set(episode.agent_episodes) >= set(acting)
            sas = {a: episode.agent_episodes[a] for a in acting}
            for agent, sa in sas.items():
                seen = sa.get_observations(local)
                np.testing.assert_allclose(seen["obs"], obs[b][agent]["obs"], rtol=1e-6)
                np.testing.assert_allclose(seen["state"], obs[b][agent]["state"], rtol=1e-6)
            actions = {a: np.asarray(sa.get_actions(local)) for a, sa in sas.items()}
            batch = {Columns.OBS: {
                k: torch.as_tensor(np.stack([obs[b][a][k] for a in acting]))
                for k in ("obs", "state")
            }}  # fmt: skip
            logits = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
            logp = dist_cls.from_logits(logits).logp(
                torch.as_tensor(np.stack(list(actions.values())))
            )
            stored = [sa.get_extra_model_outputs(Columns.ACTION_LOGP, local) for sa in sas.values()]
            np.testing.assert_allclose(stored, logp.numpy(), rtol=1e-4, atol=1e-5)
            obs[b], rewards, terms, truncs, infos = view.step(actions)
            for agent, sa in sas.items():
                assert sa.get_rewards(local) == pytest.approx(rewards[agent], rel=1e-5, abs=1e-6)
                ended = terms[agent] or truncs[agent]
                if ended:  # its episode ends here: no later steps, its final observation
                    assert sa.is_done and len(sa) == local + 1
                    np.testing.assert_allclose(
                        sa.get_observations(-1)["obs"], obs[b][agent]["obs"], rtol=1e-6
                    )
                    if terms[agent]:
                        assert sa.is_terminated
            returns[b] += sum(rewards.values())
            running[b] += len(acting)
            if terms["__all__"] or truncs["__all__"]:
                assert episode.is_done and local == len(episode) - 1
                reference = next(iter(infos.values()))  # the reward summary, as RewardEnv's
                summary = episode_summary(episode)
                assert summary[TASK_INFO] == reference[TASK_INFO]
                assert summary[EPISODE_INFO] == pytest.approx(reference[EPISODE_INFO], rel=1e-5)
                finished.append((returns[b], running[b]))
                returns[b] = running[b] = 0
                done.append(b)
            else:
                assert local < len(episode) - 1 or not episode.is_done
        if done:
            for b, s in zip(done, rng.integers(0, 2**31 - 1, size=len(done)).tolist()):
                obs[b] = views[b].reset(seed=s)[0]
    metrics = runner.get_metrics()
    return finished, metrics, episodes


def test_agents_that_leave_end_their_episodes_where_the_single_copy_view_does():
    """Returns, boundaries, actions, log-probs and final observations of a ParallelEnv
    whose agents leave at seeded steps equal the single-copy view's, copy by copy."""
    finished, metrics, episodes = check_against_lockstep_views(LEAVING, {}, copies=4, steps=14)
    assert len(finished) >= 8
    lengths = {len(sa) for e in episodes if e.is_done for sa in e.agent_episodes.values()}
    assert len(lengths) > 2  # agents left at different steps: the test sees departures
    assert float(metrics["episode_return_mean"]) == pytest.approx(
        np.mean([r for r, _ in finished]), rel=1e-5
    )
    assert float(metrics["num_episodes"]) == len(finished)
    agent_steps = sum(float(v) for v in metrics["num_agent_steps_sampled"].values())
    assert agent_steps == sum(e.agent_steps() for e in episodes) < 4 * 14 * 3


@pytest.mark.parametrize("continuous", [False, True])
def test_mpe_simple_spread_matches_the_single_copy_view(continuous):
    """Stepped by the core's lean AEC cycle, the copies play the wrapper's episodes."""
    config = {"N": 2, "max_cycles": 5, "continuous_actions": continuous}
    finished, metrics, _ = check_against_lockstep_views(MPE, config, copies=3, steps=12)
    assert len(finished) == 6  # 3 copies x 2 whole episodes
    assert float(metrics["episode_len_mean"]) == 5
    assert float(metrics["episode_return_mean"]) == pytest.approx(
        np.mean([r for r, _ in finished]), rel=1e-5
    )


def test_the_core_replays_the_same_episodes_from_the_same_generator():
    core = ParallelEnvCore(PettingZooConfig(source=LEAVING), 3)
    runs = []
    for _ in range(2):
        rng = np.random.default_rng(3)
        core.reset(rng)
        seen = []
        for _ in range(8):
            result = core.step(np.ones((3, 3), dtype=np.int64), rng)
            seen.append((core.observe().copy(), result.rewards, core.alive().copy()))
            done = result.terminated | result.truncated
            if done.any():
                core.reset(rng, mask=done)
        runs.append(seen)
    for (obs_a, rew_a, alive_a), (obs_b, rew_b, alive_b) in zip(*runs):
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(rew_a, rew_b)
        np.testing.assert_array_equal(alive_a, alive_b)
    assert core.global_state().shape == (3, 12) and core.default_action() == 0


@pytest.mark.parametrize(
    ("factory", "fragment"),
    [
        ("two_spaces", "agents' observation spaces differ (agent_0 Box(4,), agent_1 Box(5,))"),
    ],
)
def test_cores_refuse_what_they_cannot_run_and_the_run_falls_back(caplog, factory, fragment):
    env_id = f"pettingzoo:{__name__}:{factory}"
    reason = PettingZooEnv.batched_reason({"source": env_id})
    assert fragment in reason and "\n" not in reason
    exp = experiment(env_id, {}, 2, shared=False)
    assert unsupported_reason(exp) == reason
    with caplog.at_level(logging.INFO, logger="rl_platform.builder"):
        config = build_algorithm_config(exp)
    assert config.env_runner_cls is None
    assert f"sampler: stock (the batched runner cannot run this: {reason})" in caplog.text


def test_a_speaker_listener_pair_is_refused_with_its_spaces():
    reason = PettingZooEnv.batched_reason(
        {"source": "pettingzoo:mpe2.simple_speaker_listener_v4:parallel_env"}
    )
    assert reason.startswith("agents' observation spaces differ (speaker_0 Box(3,), listener_0")
    assert PettingZooEnv.batched_reason({"source": MPE}) is None
