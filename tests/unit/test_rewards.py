"""Reward engineering: difference rewards, potential shaping, coordination bonus, logging."""

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from rl_platform.config import ConfigError, load_experiment
from rl_platform.rewards import (
    EPISODE_INFO,
    RewardEnv,
    make_env,
    mean_cosine_similarity,
    shaping_term,
)
from rl_platform.sampling import GlobalStateEnv


def reward_env(env_id="coverage", env_config=None, **rewards) -> RewardEnv:
    return RewardEnv({"env_id": env_id, "env_config": env_config or {}, "rewards": rewards})


def play(env, actions_of, seed=0):
    """One episode; returns the per-step rewards and the last infos."""
    obs, _ = env.reset(seed=seed)
    steps, done, t = [], False, 0
    while not done:
        obs, rewards, terms, truncs, infos = env.step(actions_of(t, obs))
        steps.append(rewards)
        done = terms["__all__"] or truncs["__all__"]
        t += 1
    return steps, infos


def test_without_engineering_rewards_pass_through_and_episode_sums_are_reported():
    plain = make_env("rendezvous", {})
    wrapped = reward_env("rendezvous")
    rng = np.random.default_rng(0)
    moves = [{a: rng.uniform(-1, 1, 2).astype(np.float32) for a in plain.possible_agents}] * 25
    expected, _ = play(plain, lambda t, obs: moves[t])
    got, infos = play(wrapped, lambda t, obs: moves[t])
    assert got == expected
    summary = infos["agent_0"][EPISODE_INFO]
    total = sum(sum(r.values()) for r in expected) / 3
    assert summary["env"] == pytest.approx(total) and summary["total"] == pytest.approx(total)
    assert set(summary) == {"env", "total", "proximity", "effort"}
    assert infos["agent_0"]["task"] == "medium"


def test_difference_reward_is_each_agents_own_contribution():
    """Coverage, 3 agents on 3 equal targets: alone on a target earns 1/3, sharing earns 0."""
    env = reward_env(env_config={"num_agents": 3, "num_targets": 3}, difference=True)
    env.reset(seed=0)
    _, rewards, *_ = env.step({"agent_0": 0, "agent_1": 1, "agent_2": 1})
    assert rewards == pytest.approx({"agent_0": 1 / 3, "agent_1": 0.0, "agent_2": 0.0})
    _, rewards, *_ = env.step({"agent_0": 0, "agent_1": 1, "agent_2": 3})  # agent_2 idle
    assert rewards == pytest.approx({"agent_0": 1 / 3, "agent_1": 1 / 3, "agent_2": 0.0})
    team = reward_env(env_config={"num_agents": 3, "num_targets": 3})
    team.reset(seed=0)
    _, rewards, *_ = team.step({"agent_0": 0, "agent_1": 1, "agent_2": 1})
    assert rewards == pytest.approx(dict.fromkeys(rewards, 2 / 3))  # everyone gets G


def test_difference_rewards_leave_the_real_trajectory_unchanged():
    """The counterfactual steps draw nothing from the env's generator (same values after)."""
    config = {"task": "expert"}  # values re-drawn every step: any leaked draw would show
    plain, engineered = (
        reward_env(env_config=config),
        reward_env(env_config=config, difference=True),
    )
    rng = np.random.default_rng(1)
    joint = [{a: int(rng.integers(0, 7)) for a in plain.possible_agents} for _ in range(10)]
    plain.reset(seed=3)
    engineered.reset(seed=3)
    for actions in joint:
        a = plain.step(actions)
        b = engineered.step(actions)
        for agent in plain.possible_agents:
            np.testing.assert_array_equal(a[0][agent], b[0][agent])
        assert b[4]["agent_0"]["reward_components"] == a[4]["agent_0"]["reward_components"]


def test_shaping_adds_gamma_phi_next_minus_phi_and_telescopes():
    gamma = 0.9
    env = reward_env("rendezvous", shaping={"potential": "proximity", "gamma": gamma})
    probe = make_env("rendezvous", {})
    rng = np.random.default_rng(2)
    moves = [{a: rng.uniform(-1, 1, 2).astype(np.float32) for a in probe.possible_agents}] * 25
    probe.reset(seed=5)
    phis, env_rewards = [probe.potential("proximity")], []
    for move in moves:
        _, r, *_ = probe.step(move)
        env_rewards.append(r)
        phis.append(probe.potential("proximity"))
    shaped, infos = play(env, lambda t, obs: moves[t], seed=5)
    for t, rewards in enumerate(shaped):
        for agent, value in rewards.items():
            expected = env_rewards[t][agent] + gamma * phis[t + 1][agent] - phis[t][agent]
            assert value == pytest.approx(expected, abs=1e-6)
    # With gamma = 1 the episode's shaping sums to Phi(s_T) - Phi(s_0) (truncation).
    undiscounted = reward_env("rendezvous", shaping={"potential": "proximity", "gamma": 1.0})
    _, infos = play(undiscounted, lambda t, obs: moves[t], seed=5)
    drift = np.mean([phis[-1][a] - phis[0][a] for a in probe.possible_agents])
    assert infos["agent_0"][EPISODE_INFO]["shaping"] == pytest.approx(drift, abs=1e-5)


def test_shaping_term_zeroes_the_terminal_potential():
    assert shaping_term(2.0, 5.0, 0.5, terminated=False) == pytest.approx(0.5)
    assert shaping_term(2.0, 5.0, 0.5, terminated=True) == pytest.approx(-2.0)


def value_iteration(rewards, transitions, terminal, gamma, iterations=2000):
    """Optimal Q of a deterministic tabular MDP: rewards/transitions are (S, A)."""
    q = np.zeros(rewards.shape)
    for _ in range(iterations):
        v = np.where(terminal, 0.0, q.max(axis=1))
        q = rewards + gamma * v[transitions] * ~terminal[transitions]
    return q


def chain_mdp():
    """A 6-state corridor: left/right/stay; the right end pays 10 and ends, each step -1.

    A side pocket (state 0) pays +0.5 for staying: a trap the optimal policy walks past.
    """
    states, actions = 6, 3
    transitions = np.zeros((states, actions), dtype=int)
    rewards = np.full((states, actions), -1.0)
    for s in range(states):
        transitions[s] = [max(s - 1, 0), min(s + 1, states - 1), s]
    rewards[0, 2] = 0.5
    rewards[states - 2, 1] = 10.0
    terminal = np.zeros(states, dtype=bool)
    terminal[states - 1] = True
    return rewards, transitions, terminal


@pytest.mark.parametrize("seed", range(5))
def test_potential_shaping_leaves_the_optimal_policy_of_a_tabular_task_unchanged(seed):
    """Ng et al. 1999: with F = gamma Phi(s') - Phi(s) (Phi terminal = 0), same argmax."""
    gamma = 0.9
    rewards, transitions, terminal = chain_mdp()
    phi = np.random.default_rng(seed).normal(0.0, 20.0, size=len(terminal))  # large, arbitrary
    shaped = rewards.copy()
    for s in range(len(terminal)):
        for a in range(rewards.shape[1]):
            s2 = transitions[s, a]
            shaped[s, a] += shaping_term(phi[s], phi[s2], gamma, bool(terminal[s2]))
    live = ~terminal
    plain_policy = value_iteration(rewards, transitions, terminal, gamma).argmax(axis=1)
    shaped_policy = value_iteration(shaped, transitions, terminal, gamma).argmax(axis=1)
    np.testing.assert_array_equal(plain_policy[live], shaped_policy[live])
    # The test can fail: a bonus that is not a potential difference changes the policy.
    bribed = rewards.copy()
    bribed[:, 2] += 3.0  # pay for staying put
    bribed_policy = value_iteration(bribed, transitions, terminal, gamma).argmax(axis=1)
    assert not np.array_equal(plain_policy[live], bribed_policy[live])


def test_mean_cosine_similarity():
    np.testing.assert_allclose(mean_cosine_similarity(np.eye(3)), [0, 0, 0])
    np.testing.assert_allclose(mean_cosine_similarity(np.ones((3, 2))), [1, 1, 1])
    opposite = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(mean_cosine_similarity(opposite), [0, -1, 0])
    np.testing.assert_allclose(mean_cosine_similarity(np.zeros((2, 2))), [0, 0])
    assert mean_cosine_similarity(np.ones((1, 2))).shape == (1,)


@pytest.mark.parametrize(("prefer", "sign"), [("similar", 1.0), ("diverse", -1.0)])
def test_coordination_bonus_rewards_agreement_or_diversity(prefer, sign):
    config = {"num_agents": 3, "num_targets": 3}
    env = reward_env(env_config=config, coordination={"weight": 0.1, "prefer": prefer})
    plain = reward_env(env_config=config)
    env.reset(seed=0)
    plain.reset(seed=0)
    together = {"agent_0": 1, "agent_1": 1, "agent_2": 1}
    _, bonus, *_ = env.step(together)
    _, base, *_ = plain.step(together)
    for agent in base:
        assert bonus[agent] - base[agent] == pytest.approx(sign * 0.1)
    apart = {"agent_0": 0, "agent_1": 1, "agent_2": 2}
    _, bonus, *_ = env.step(apart)
    _, base, *_ = plain.step(apart)
    assert bonus == pytest.approx(base)  # one-hot actions: orthogonal, similarity 0


def test_continuous_coordination_uses_cosine_of_action_vectors():
    env = reward_env("rendezvous", coordination={"weight": 1.0})
    env.reset(seed=0)
    actions = {
        "agent_0": np.array([1.0, 0.0], np.float32),
        "agent_1": np.array([0.0, 1.0], np.float32),
        "agent_2": np.array([1.0, 1.0], np.float32),
    }
    _, _, _, _, infos = env.step(actions)
    half = np.sqrt(0.5)
    assert env.episode_totals("agent_0")["coordination"] == pytest.approx(half / 2)
    assert env.episode_totals("agent_2")["coordination"] == pytest.approx(half)


def test_wrapped_envs_pass_rllibs_check_and_keep_their_api():
    env = reward_env(
        "rendezvous",
        shaping={"potential": "spread", "gamma": 0.99},
        coordination={"weight": 0.1},
    )
    check_multiagent_environments(env)
    env.set_task("hard")
    assert env.get_task() == "hard" and env.state().shape == env.state_space.shape
    assert env.baselines == ("centroid", "still")  # the rest of the API passes through
    wrapped = GlobalStateEnv(
        {"env_id": "coverage", "env_config": {}, "agent_id": True, "rewards": {"difference": True}}
    )
    assert isinstance(wrapped.inner, RewardEnv)
    check_multiagent_environments(wrapped)


def test_gamma_of_the_shaping_term_is_the_algorithms_unless_given():
    raw = {
        "name": "s",
        "env": {"id": "rendezvous"},
        "algorithm": {"id": "ppo", "hyperparams": {"gamma": 0.95}},
        "rewards": {"shaping": {"potential": "proximity"}},
    }
    assert load_experiment(raw).rewards.shaping.gamma == 0.95
    raw["rewards"]["shaping"]["gamma"] = 0.5
    assert load_experiment(raw).rewards.shaping.gamma == 0.5


@pytest.mark.parametrize(
    ("env_id", "rewards", "fragment"),
    [
        ("rendezvous", {"shaping": {"potential": "nearness"}}, "no such potential"),
        ("rendezvous", {"difference": True, "team": 0.5}, "cannot be combined"),
        ("rendezvous", {"coordination": {"weight": -0.1}}, "coordination.weight"),
        ("rendezvous", {"coordination": {"prefer": "opposite"}}, "coordination.prefer"),
        ("pettingzoo:mpe2.simple_spread_v3:parallel_env", {"difference": True}, "counterfactual"),
        (
            "pettingzoo:mpe2.simple_spread_v3:parallel_env",
            {"shaping": {"potential": "x"}},
            "none: this env has no potentials",
        ),
    ],
)
def test_bad_reward_settings_are_refused(env_id, rewards, fragment):
    raw = {"name": "r", "env": {"id": env_id}, "algorithm": {"id": "ppo"}, "rewards": rewards}
    with pytest.raises(ConfigError, match=fragment):
        load_experiment(raw)


def test_batched_composition_of_b_copies_equals_b_single_copy_ones():
    """RewardEnv composes with BatchedRewards at B=1: B copies at once give the same
    rewards, episode totals and summaries as each copy alone."""
    from rl_platform.config import RewardsSpec
    from rl_platform.rewards import TASK_INFO, BatchedRewards, action_vectors

    spec = RewardsSpec.model_validate(
        {
            "difference": True,
            "shaping": {"potential": "p", "gamma": 0.9, "weight": 0.5},
            "coordination": {"weight": 0.2, "prefer": "diverse"},
        }
    )
    rng = np.random.default_rng(0)
    copies, agents, steps = 4, 3, 6
    space = gym.spaces.Discrete(5)
    batched = BatchedRewards(spec, copies, agents, penalty=0.5)
    singles = [BatchedRewards(spec, 1, agents, penalty=0.5) for _ in range(copies)]
    phi = rng.normal(size=(copies, agents))
    batched.start(phi=phi, level="easy")
    for b, single in enumerate(singles):
        single.start(phi=phi[b : b + 1], level="easy")
    for _ in range(steps):
        reward = rng.normal(size=(copies, agents)).astype(np.float32)
        step = {
            "terminated": (rng.random(copies) < 0.3)[:, None],
            "phi_next": rng.normal(size=(copies, agents)),
            "vectors": action_vectors(rng.integers(0, 5, (copies, agents)), space),
            "counterfactual": rng.normal(size=(copies, agents)),
            "shielded": rng.random((copies, agents)) < 0.5,
        }
        components = rng.normal(size=(1, copies, agents))
        total = batched.compose(reward, components=(["c"], components), **step)
        for b, single in enumerate(singles):
            one = {k: v[b : b + 1] for k, v in step.items()}
            alone = single.compose(
                reward[b : b + 1], components=(["c"], components[:, b : b + 1]), **one
            )
            np.testing.assert_allclose(alone, total[b : b + 1], rtol=1e-12)
    summaries = batched.summaries(np.arange(copies))
    for b, single in enumerate(singles):
        (alone,) = single.summaries(np.zeros(1, dtype=np.int64))
        assert alone[TASK_INFO] == summaries[b][TASK_INFO] == "easy"
        assert alone[EPISODE_INFO] == pytest.approx(summaries[b][EPISODE_INFO], rel=1e-12)
    assert set(summaries[0][EPISODE_INFO]) == {
        "env", "difference", "shaping", "coordination", "interventions", "safety", "total", "c"
    }  # fmt: skip
