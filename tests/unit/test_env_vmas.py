"""VMAS scenarios as a batched core: spaces, seeding, per-copy resets, both action kinds,
the env checks, and ids and configs refused with a clear message."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

vmas = pytest.importorskip("vmas")

from rl_platform import registry  # noqa: E402
from rl_platform.envs.checks import check_env, core_agent_steps_per_second  # noqa: E402
from rl_platform.envs.vmas import VmasConfig, VmasCore, VmasEnv  # noqa: E402
from rl_platform.trust import UntrustedModuleError  # noqa: E402


def core(scenario="navigation", batch=4, **config):
    return VmasCore(VmasConfig(scenario=scenario, **config), batch)


def random_actions(core_, rng, steps):
    space, shape = core_.action_space, (core_.batch_size, core_.num_agents)
    if isinstance(space, gym.spaces.Discrete):
        return [rng.integers(0, space.n, shape) for _ in range(steps)]
    return [rng.uniform(-1, 1, (*shape, *space.shape)).astype(np.float32) for _ in range(steps)]


def trajectory(core_, seed, actions):
    core_.reset(np.random.default_rng(seed))
    rng = np.random.default_rng(0)
    out = [core_.observe()]
    for action in actions:
        result = core_.step(action, rng)
        out += [core_.observe(), result.rewards, result.terminated, result.truncated]
    return out


def assert_same(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("scenario", "agents", "obs_dim"), [("navigation", 4, 18), ("balance", 3, 16)]
)
def test_spaces_are_the_agents_shared_ones_and_the_state_joins_observations(
    scenario, agents, obs_dim
):
    c = core(scenario, batch=5)
    assert c.num_agents == agents
    assert c.observation_space == gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    assert c.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    c.reset(np.random.default_rng(0))
    obs = c.observe()
    assert obs.shape == (5, agents, obs_dim) and obs.dtype == np.float32
    state = c.global_state()
    assert state.shape == (5, agents * obs_dim) and c.state_space.contains(state[0])
    np.testing.assert_array_equal(state, obs.reshape(5, -1))
    assert c.task_levels == ("default",) and c.baselines == ()
    assert c.reward_components == ("reward",)
    np.testing.assert_array_equal(c.default_action(), np.zeros(2, np.float32))


def test_discrete_actions_are_one_discrete_space_with_a_no_op():
    c = core(continuous_actions=False)
    assert c.action_space == gym.spaces.Discrete(9)
    assert c.default_action() == 0
    result = c.step(np.zeros((4, 4), dtype=np.int64), np.random.default_rng(0))
    assert result.rewards.shape == (4, 4) and result.rewards.dtype == np.float32


def test_the_rllib_view_is_the_core_at_one_copy():
    env = VmasEnv({"scenario": "navigation"})
    single = core(batch=1)
    actions = random_actions(single, np.random.default_rng(1), 6)
    expected = trajectory(single, 3, actions)
    obs, _ = env.reset(seed=3)
    got = [np.stack([obs[a] for a in env.possible_agents])[None]]
    for action in actions:
        obs, rewards, terms, truncs, _ = env.step(dict(zip(env.possible_agents, action[0])))
        got += [
            np.stack([obs[a] for a in env.possible_agents])[None],
            np.array([[rewards[a] for a in env.possible_agents]], dtype=np.float32),
            np.array([terms["__all__"]]),
            np.array([truncs["__all__"]]),
        ]
    assert_same(got, expected)


@pytest.mark.parametrize("continuous", [True, False])
def test_same_generator_same_episodes_whatever_other_worlds_run(continuous):
    first, second = core(continuous_actions=continuous), core(continuous_actions=continuous)
    actions = random_actions(first, np.random.default_rng(1), 8)
    alone = trajectory(first, 5, actions)
    # The second core resets and steps between the first's calls: its draws stay its own.
    first.reset(np.random.default_rng(5))
    second.reset(np.random.default_rng(99))
    rng = np.random.default_rng(0)
    interleaved = [first.observe()]
    for action in actions:
        second.step(action, rng)
        second.reset(np.random.default_rng(7), np.array([True, False, True, False]))
        result = first.step(action, rng)
        interleaved += [first.observe(), result.rewards, result.terminated, result.truncated]
    assert_same(interleaved, alone)
    assert not np.array_equal(trajectory(second, 6, actions)[0], alone[0])


def test_a_copys_reset_leaves_the_other_copies_untouched():
    reset, kept = core(), core()
    actions = random_actions(reset, np.random.default_rng(2), 6)
    rng = np.random.default_rng(0)
    for c in (reset, kept):
        c.reset(np.random.default_rng(4))
        for action in actions[:3]:
            c.step(action, rng)
    before = reset.observe()
    reset.reset(np.random.default_rng(8), np.array([False, True, False, False]))
    after = reset.observe()
    others = [0, 2, 3]
    np.testing.assert_array_equal(after[others], before[others])
    assert not np.array_equal(after[1], before[1])
    for action in actions[3:]:
        a, b = reset.step(action, rng), kept.step(action, rng)
        np.testing.assert_array_equal(reset.observe()[others], kept.observe()[others])
        np.testing.assert_array_equal(a.rewards[others], b.rewards[others])


def test_continuous_actions_are_clipped_into_the_box_and_not_changed():
    clipped, wild = core(), core()
    action = np.random.default_rng(3).uniform(-1, 1, (4, 4, 2)).astype(np.float32)
    action[0, 0] = [5.0, -7.0]
    given = action.copy()
    for c in (clipped, wild):
        c.reset(np.random.default_rng(1))
    rng = np.random.default_rng(0)
    wild.step(action, rng)
    clipped.step(np.clip(action, -1, 1), rng)
    np.testing.assert_array_equal(wild.observe(), clipped.observe())
    np.testing.assert_array_equal(action, given)  # the caller's array is left alone


def test_rewards_of_a_copy_shape_are_flattened_per_agent():
    c = core("wheel", batch=3)  # wheel's scenario gives each agent a (B, 1) reward
    c.reset(np.random.default_rng(0))
    result = c.step(np.zeros((3, c.num_agents, 2), np.float32), np.random.default_rng(0))
    assert result.rewards.shape == (3, c.num_agents)
    assert result.terminated.shape == result.truncated.shape == (3,)


def test_episodes_truncate_at_max_steps():
    c = core("simple_spread", batch=2, max_steps=3)
    c.reset(np.random.default_rng(0))
    zeros = np.zeros((2, 3, 2), np.float32)
    flags = [c.step(zeros, np.random.default_rng(0)) for _ in range(3)]
    assert [bool(f.truncated.all()) for f in flags] == [False, False, True]
    assert not any(f.terminated.any() for f in flags)


def test_team_reward_and_weights_apply_to_vmas_rewards():
    plain, scaled = core("balance"), core("balance", reward_weights={"reward": 2.0})
    rng = np.random.default_rng(0)
    action = random_actions(plain, rng, 1)[0]
    for c in (plain, scaled):
        c.reset(np.random.default_rng(1))
    np.testing.assert_allclose(
        scaled.step(action, rng).rewards, 2 * plain.step(action, rng).rewards, rtol=1e-6
    )


def test_balance_passes_every_env_check():
    failures = [r for r in check_env("vmas:balance") if not r.passed]
    assert not failures, failures


def test_discrete_simple_spread_passes_every_env_check():
    results = check_env("vmas:simple_spread", {"continuous_actions": False})
    assert all(r.passed for r in results), results


def test_the_core_throughput_probe_builds_the_ids_scenario():
    assert core_agent_steps_per_second("vmas:simple_spread", batch_size=8, seconds=0.01) > 0


def test_a_vmas_id_binds_its_scenario():
    entry = registry.get_env("vmas:navigation")
    assert entry.load() is VmasEnv
    assert entry.bound_config == {"scenario": "navigation"}
    every = {*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios}
    assert set(registry.vmas_scenarios()) == every


@pytest.mark.parametrize(
    ("env_id", "says"),
    [
        ("vmas:no_such_scenario", "not a VMAS scenario; expected one of: asym_joint, balance"),
        ("vmas:Navigation", "lowercase letters, digits and _ only"),
        ("vmas:../navigation", "lowercase letters, digits and _ only"),
        ("vmas:", "lowercase letters, digits and _ only"),
    ],
)
def test_an_id_naming_no_scenario_is_refused_before_any_import(env_id, says):
    with pytest.raises(UntrustedModuleError, match=says.replace(".", r"\.")) as err:
        registry.get_env(env_id)
    assert env_id in str(err.value)


def test_the_registry_finds_scenarios_without_importing_torch():
    code = (
        "import sys; from rl_platform import registry; "
        "entry = registry.get_env('vmas:balance'); "
        "assert entry.bound_config == {'scenario': 'balance'}; "
        "assert 'torch' not in sys.modules and 'vmas' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"bogus": 3}, "does not take some of env.config \\['bogus'\\]"),
        ({"seed": 3}, "seed cannot be set"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_a_bad_scenario_kwarg_is_refused_by_name(config, says):
    with pytest.raises(ValueError, match=says):
        VmasEnv({"scenario": "balance", **config})


def test_agents_with_different_spaces_are_refused_naming_them():
    differ = r"observation spaces differ \(speaker_0 3, listener_0 11\)"
    with pytest.raises(ValueError, match=differ):
        VmasEnv({"scenario": "simple_speaker_listener"})


def test_missing_vmas_says_how_to_install_it(monkeypatch):
    from rl_platform.cli import app

    monkeypatch.setattr(registry, "vmas_scenarios", lambda: None)
    monkeypatch.setitem(sys.modules, "vmas", None)
    assert registry.get_env("vmas:balance").bound_config == {"scenario": "balance"}
    with pytest.raises(ValueError, match=r"pip install -e '\.\[vmas\]'"):
        VmasConfig(scenario="balance")
    result = CliRunner().invoke(app, ["envs", "check", "vmas:balance"])
    assert result.exit_code == 2
    assert "pip install -e '.[vmas]'" in result.output
