"""Coverage dynamics: the team reward, difference rewards, the baselines, the value levels."""

import numpy as np
import pytest

from rl_platform.envs.coverage import CoverageConfig, CoverageCore, CoverageEnv

IDLE = 3  # with num_targets=3


def joint(*choices):
    return {f"agent_{i}": c for i, c in enumerate(choices)}


def step_components(env, *choices):
    _, rewards, _, _, infos = env.step(joint(*choices))
    return rewards, {a: info["reward_components"] for a, info in infos.items()}


@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        ((0, 1, 2), 1.0),  # everyone on a different target
        ((1, 1, 1), 1 / 3),  # all on one
        ((IDLE, IDLE, IDLE), 0.0),  # idle agents cover nothing
        ((0, 0, IDLE), 1 / 3),
        ((2, IDLE, 0), 2 / 3),
    ],
)
def test_coverage_of_a_known_joint_action(choices, expected):
    env = CoverageEnv({"num_agents": 3, "num_targets": 3})
    env.reset(seed=0)
    rewards, parts = step_components(env, *choices)
    assert list(rewards.values()) == pytest.approx([expected] * 3)
    assert [p["coverage"] for p in parts.values()] == pytest.approx([expected] * 3)


def test_coverage_weighs_targets_by_value_and_crowding_marks_shared_targets():
    env = CoverageEnv({"num_agents": 4, "num_targets": 3, "task": "medium"})
    env.reset(seed=1)
    values = env.core._values[0].astype(np.float64)
    _, parts = step_components(env, 0, 2, 2, IDLE)
    share = (values[0] + values[2]) / values.sum()
    assert [p["coverage"] for p in parts.values()] == pytest.approx([share] * 4, rel=1e-6)
    assert [p["crowding"] for p in parts.values()] == [0.0, -1.0, -1.0, 0.0]


def test_crowding_weight_turns_the_component_on():
    env = CoverageEnv({"num_agents": 3, "num_targets": 3, "reward_weights": {"crowding": 0.5}})
    env.reset(seed=0)
    rewards, _ = step_components(env, 0, 0, 1)
    assert list(rewards.values()) == pytest.approx([2 / 3 - 0.5, 2 / 3 - 0.5, 2 / 3])


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("num_agents", [2, 4, 6])
def test_greedy_covers_everything_when_agents_do_not_outnumber_targets(discrete, num_agents):
    env = CoverageEnv({"num_agents": num_agents, "num_targets": num_agents, "discrete": discrete})
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        actions = env.baseline_actions(obs, "greedy")
        obs, rewards, _, truncs, _ = env.step(actions)
        assert list(rewards.values()) == pytest.approx([1.0] * num_agents)
        done = truncs["__all__"]


@pytest.mark.parametrize("level", ["easy", "medium", "hard", "expert"])
def test_greedy_covers_the_most_valuable_targets(level):
    # 3 agents for 6 targets: the best any team can do is the 3 most valuable.
    config = CoverageConfig(num_agents=3, num_targets=6, task=level)
    core = CoverageCore(config, batch_size=64)
    rng = np.random.default_rng(0)
    core.reset(rng)
    for _ in range(config.episode_length):
        best = np.sort(core._values, axis=1)[:, -3:].sum(1) / core._values.sum(1)
        result = core.step(core.baseline_actions("greedy", core.observe()), rng)
        np.testing.assert_allclose(result.components["coverage"][:, 0], best, rtol=1e-5)


def test_agents_beyond_the_targets_stay_idle_under_greedy():
    core = CoverageCore(CoverageConfig(num_agents=5, num_targets=3), batch_size=1)
    core.reset(np.random.default_rng(0))
    assert core.baseline_actions("greedy", core.observe())[0].tolist() == [0, 1, 2, 3, 3]


def test_same_sends_everyone_to_the_most_valuable_target():
    core = CoverageCore(CoverageConfig(task="hard"), batch_size=8)
    core.reset(np.random.default_rng(0))
    actions = core.baseline_actions("same", core.observe())
    np.testing.assert_array_equal(actions, np.repeat(core._values.argmax(1)[:, None], 6, 1))


def test_difference_reward_is_the_value_an_agent_alone_covers():
    env = CoverageEnv({"num_agents": 4, "num_targets": 3, "task": "hard"})
    env.reset(seed=2)
    values = env.core._values[0].astype(np.float64)
    actions = joint(0, 1, 1, IDLE)  # agent_0 alone on 0; agents 1 and 2 share 1; agent_3 idle
    counterfactual = {a: env.counterfactual_rewards(actions, a)[a] for a in actions}
    _, rewards, _, _, _ = env.step(actions)
    difference = {a: rewards[a] - counterfactual[a] for a in actions}
    expected = {"agent_0": values[0] / values.sum(), "agent_1": 0.0, "agent_2": 0.0}
    expected["agent_3"] = 0.0
    assert difference == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("discrete", [True, False])
def test_default_action_is_idle(discrete):
    env = CoverageEnv({"num_agents": 3, "num_targets": 3, "discrete": discrete})
    env.reset(seed=0)
    idle = env.core.default_action()
    rewards, _ = step_components(env, idle, idle, idle)
    assert list(rewards.values()) == [0.0, 0.0, 0.0]
    assert env.core._occupancy.sum() == 0


def test_continuous_actions_go_to_the_argmax():
    env = CoverageEnv({"num_agents": 3, "num_targets": 3, "discrete": False})
    env.reset(seed=0)
    scores = [
        np.array([0.9, -1.0, 0.2, 0.0], dtype=np.float32),  # target 0
        np.array([5.0, 7.0, -3.0, 6.0], dtype=np.float32),  # outside the Box: order counts
        np.array([-1.0, -1.0, -1.0, 1.0], dtype=np.float32),  # idle
    ]
    rewards, _ = step_components(env, *scores)
    assert list(rewards.values()) == pytest.approx([2 / 3] * 3)
    assert env.core._occupancy[0].tolist() == [1.0, 1.0, 0.0]


def test_continuous_baselines_match_the_discrete_ones():
    discrete = CoverageCore(CoverageConfig(task="hard"), batch_size=16)
    continuous = CoverageCore(CoverageConfig(task="hard", discrete=False), batch_size=16)
    discrete.reset(np.random.default_rng(0))
    continuous.reset(np.random.default_rng(0))
    for name in CoverageCore.baselines:
        chosen = discrete.baseline_actions(name, discrete.observe())
        scores = continuous.baseline_actions(name, continuous.observe())
        assert continuous.action_space.contains(scores[0, 0])
        np.testing.assert_array_equal(continuous.choices(scores), chosen)


def test_observation_layout():
    env = CoverageEnv({"num_agents": 3, "num_targets": 4, "task": "medium"})
    env.reset(seed=0)
    obs, _, _, _, _ = env.step(joint(1, 1, 4))
    values = env.core._values[0]
    for i, agent in enumerate(env.possible_agents):
        one_hot, relative, occupancy, time_left = np.split(obs[agent], [3, 7, 11])
        assert one_hot.tolist() == np.eye(3)[i].tolist()
        np.testing.assert_allclose(relative, values / values.max(), rtol=1e-6)
        np.testing.assert_allclose(occupancy, [0.0, 2 / 3, 0.0, 0.0], rtol=1e-6)
        assert time_left.tolist() == pytest.approx([0.9])
    np.testing.assert_allclose(env.state()[:4], values / values.max(), rtol=1e-6)


def test_potential_is_the_coverage_of_last_step():
    env = CoverageEnv({"num_agents": 3, "num_targets": 3})
    env.reset(seed=0)
    assert list(env.potential("coverage").values()) == [0.0, 0.0, 0.0]
    env.step(joint(0, 0, 2))
    assert list(env.potential("coverage").values()) == pytest.approx([2 / 3] * 3)
    with pytest.raises(ValueError, match="no potential 'distance'"):
        env.potential("distance")


def drawn_values(level, steps=0, batch_size=2000):
    core = CoverageCore(CoverageConfig(task=level), batch_size=batch_size)
    rng = np.random.default_rng(0)
    core.reset(rng)
    for _ in range(steps):
        core.step(np.zeros((batch_size, 6), dtype=np.int64), rng)
    return core._values.copy()


def test_value_distributions_by_level():
    assert (drawn_values("easy") == 1.0).all()
    medium = drawn_values("medium")
    assert medium.min() >= 0.5 and medium.max() <= 1.5
    assert medium.mean() == pytest.approx(1.0, abs=0.01)
    # At hard a few targets dominate: the most valuable of 6 holds about 40% of the value.
    hard = drawn_values("hard")
    assert (hard > 0).all()
    top_share = (hard.max(1) / hard.sum(1)).mean()
    medium_share = (medium.max(1) / medium.sum(1)).mean()
    assert top_share > 0.35 > 0.25 > medium_share


@pytest.mark.parametrize(("level", "redrawn"), [("hard", False), ("expert", True)])
def test_values_are_redrawn_every_step_only_at_expert(level, redrawn):
    before, after = drawn_values(level, batch_size=4), drawn_values(level, 1, batch_size=4)
    assert (before != after).all() == redrawn
    assert (before == after).all() != redrawn


def test_batched_copies_are_independent_games():
    config = CoverageConfig(task="medium")
    batched = CoverageCore(config, batch_size=3)
    batched.reset(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    actions = rng.integers(0, 7, size=(3, 6))
    result = batched.step(actions, rng)
    for b in range(3):
        single = CoverageCore(config, batch_size=1)
        single.reset(np.random.default_rng(0))
        single._values[:] = batched._values[b]
        alone = single.step(actions[b : b + 1], rng)
        np.testing.assert_allclose(alone.rewards[0], result.rewards[b], rtol=1e-6)
        np.testing.assert_allclose(single.observe()[0], batched.observe()[b], rtol=1e-6)
