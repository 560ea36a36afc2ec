"""Any PettingZoo env through the adapter: third-party envs, masks, departures, bad input."""

import gymnasium as gym
import numpy as np
import pytest
from pettingzoo import ParallelEnv

from rl_platform.config import ConfigError, load_experiment
from rl_platform.envs.checks import check_env
from rl_platform.envs.pettingzoo import PettingZooEnv

THIRD_PARTY = [
    ("pettingzoo:mpe2.simple_spread_v3:parallel_env", {}),
    ("pettingzoo:mpe2.simple_spread_v3:parallel_env", {"continuous_actions": True, "N": 2}),
    ("pettingzoo:pettingzoo.classic.rps_v2:env", {}),  # AEC, through aec_to_parallel
]


@pytest.mark.parametrize(("source", "kwargs"), THIRD_PARTY)
def test_third_party_envs_pass_the_checks(source, kwargs):
    failures = [r for r in check_env(source, kwargs) if not r.passed]
    assert not failures, failures


class ShrinkingMaskedEnv(ParallelEnv):
    """Three agents with action masks; agent_2 leaves after two steps; no state()."""

    metadata = {"name": "shrinking_masked", "is_parallelizable": True}

    def __init__(self, episode_length: int = 5):
        self.possible_agents = ["agent_0", "agent_1", "agent_2"]
        self.episode_length = episode_length
        self._obs_space = gym.spaces.Dict(
            {
                "observation": gym.spaces.Box(-1, 1, (3,), np.float32),
                "action_mask": gym.spaces.MultiBinary(4),
            }
        )

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return gym.spaces.Discrete(4)

    def _obs(self):
        mask = np.array([1, 1, 0, self.t % 2], dtype=np.int8)
        return {
            a: {"observation": np.full(3, self.t / 10, np.float32), "action_mask": mask}
            for a in self.agents
        }

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        rewards = {a: float(actions[a]) for a in self.agents}
        trunc = self.t >= self.episode_length
        terms = {a: (a == "agent_2" and self.t == 2) for a in self.agents}
        truncs = {a: trunc for a in self.agents}
        obs = self._obs()
        infos = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        return obs, rewards, terms, truncs, infos


def shrinking(**kwargs):
    return ShrinkingMaskedEnv(**kwargs)


SOURCE = f"pettingzoo:{__name__}:shrinking"


@pytest.fixture(autouse=True)
def trust_this_module(monkeypatch):
    """This module's own env is named by SOURCE, as a user's trusted module would be."""
    monkeypatch.setenv("RLP_TRUSTED_MODULES", __name__)


def test_masks_departures_and_joined_state():
    env = PettingZooEnv({"source": SOURCE, "episode_length": 4})
    assert set(env.observation_spaces["agent_0"].spaces) == {"observations", "action_mask"}
    assert env.state_space.shape == (9,)
    obs, _ = env.reset(seed=0)
    assert obs["agent_0"]["action_mask"].tolist() == [1, 1, 0, 0]
    for t in range(1, 5):
        obs, rewards, terms, truncs, _ = env.step({a: 1 for a in env.agents})
        if t == 2:
            assert terms["agent_2"] and not terms["__all__"]
            assert env.agents == ["agent_0", "agent_1"]
        if t > 2:
            assert "agent_2" not in rewards
        assert env.state().shape == (9,)
    assert truncs["__all__"]
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step({"agent_0": 1})


def test_departed_unknown_and_nan_actions_are_refused():
    env = PettingZooEnv({"source": SOURCE})
    env.reset(seed=0)
    env.step({a: 0 for a in env.agents})
    env.step({a: 0 for a in env.agents})  # agent_2 leaves here
    with pytest.raises(ValueError, match="agent_2"):
        env.step({"agent_0": 0, "agent_1": 0, "agent_2": 0})
    with pytest.raises(ValueError, match="agent_1: action nan is not finite"):
        env.step({"agent_0": 0, "agent_1": float("nan")})
    with pytest.raises(ValueError, match="agent_0: action 7 is not in Discrete"):
        env.step({"agent_0": 7, "agent_1": 0})


def experiment(env_id, config=None):
    return {
        "name": "pz",
        "env": {"id": env_id, "config": config or {}},
        "algorithm": {"id": "ppo"},
        "stop": {"training_iteration": 1},
    }


def test_experiment_yaml_takes_a_pettingzoo_id_and_its_kwargs():
    config = load_experiment(experiment(THIRD_PARTY[0][0], {"N": 2}))
    assert config.env.config == {"N": 2, "reward_weights": {}, "team_reward": 0.0}


@pytest.mark.parametrize(
    ("env_id", "kwargs", "fragment"),
    [
        ("pettingzoo:pettingzoo.no_such_module:env", {}, "cannot import"),
        ("pettingzoo:mpe2.simple_spread_v3:nope", {}, "not 'nope'"),
        ("pettingzoo:no.such.module:env", {}, "module 'no.such.module' is not allowed"),
        (f"pettingzoo:{__name__}:nope", {}, "has no attribute 'nope'"),
        ("pettingzoo:mpe2.simple_spread_v3", {}, "not of the form"),
        ("pettingzoo:mpe2.simple_spread_v3:parallel_env", {"bogus": 1}, "bogus"),
    ],
)
def test_bad_pettingzoo_ids_are_config_errors(env_id, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_experiment(experiment(env_id, kwargs))


def test_random_scores_on_the_view_are_seeded_and_finite():
    from rl_platform.evaluation.baselines import RANDOM, episode_scores

    env_id = "pettingzoo:mpe2.simple_spread_v3:parallel_env"
    first = episode_scores(env_id, RANDOM, {"N": 2, "max_cycles": 10}, episodes=3, seed=4)
    again = episode_scores(env_id, RANDOM, {"N": 2, "max_cycles": 10}, episodes=3, seed=4)
    assert first.shape == (3,) and np.isfinite(first).all() and (first < 0).all()
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ValueError, match="no baseline"):
        episode_scores(env_id, "greedy", {"N": 2}, episodes=1)


def test_view_scores_match_the_batched_core_for_a_platform_env():
    from rl_platform.envs.rendezvous import RendezvousEnv
    from rl_platform.evaluation.baselines import view_episode_scores

    env = RendezvousEnv({})
    core = RendezvousEnv.core_cls(RendezvousEnv.config_model(), 1)

    def act(obs):
        return core.baseline_actions("centroid", obs)

    on_view = view_episode_scores(env, act, episodes=1, seed=5)
    on_core = core.play_episodes(act, np.random.default_rng(5))
    np.testing.assert_allclose(on_view, on_core, rtol=1e-5)
