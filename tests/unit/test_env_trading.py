"""The trading env: conformance, no NaN under any action, baselines beat random, the
batched core equals single copies, counterfactual rewards, and the market mechanics."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rl_platform import registry
from rl_platform.envs.checks import check_env
from rl_platform.envs.trading import (
    AGENT_FEATURES,
    COST,
    DISCRETE_ACTIONS,
    MARKET_FEATURES,
    POSITION,
    UNREALIZED,
    TradingConfig,
    TradingCore,
    TradingEnv,
    observed_features,
    parallel_env,
)
from rl_platform.evaluation.baselines import RANDOM, episode_scores

if "trading" not in registry.ENVS:
    registry.register_env(
        registry.EnvEntry(
            "trading",
            "N agents trade one asset in a shared market with price impact",
            "rl_platform.envs.trading:TradingEnv",
        )
    )

LEVELS = ["easy", "medium", "hard", "expert"]
CONFIGS = [{}, {"discrete": True}, {"task": "expert"}, {"num_agents": 2}]
CONFIGS += [{"task": "medium"}, {"task": "hard"}, {"discrete": True, "task": "expert"}]


@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())) or "default"
)
def test_conformance_checks_pass(config):
    # Includes PettingZoo's parallel_api_test and parallel_seed_test, hence every level.
    failures = [r for r in check_env("trading", config) if not r.passed]
    assert not failures, failures


def test_spaces_and_observation_layout():
    env = TradingEnv({})
    obs, _ = env.reset(seed=0)
    assert env.possible_agents == [f"agent_{i}" for i in range(5)]
    space = env.observation_spaces["agent_0"]
    assert space.shape == (50,) and space.dtype == np.float32
    assert env.action_spaces["agent_0"].shape == (3,)
    used = observed_features(20)
    assert used == 20 + len(MARKET_FEATURES) + len(AGENT_FEATURES) <= 50
    for o in obs.values():
        assert space.contains(o)
        assert np.all(o[used:] == 0.0)  # padding
        cash, position = o[20 + len(MARKET_FEATURES)], o[21 + len(MARKET_FEATURES)]
        assert (cash, position) == (1.0, 0.0)
    assert env.state_space.contains(env.state())


def test_config_is_validated():
    with pytest.raises(ValueError, match="obs_dim"):
        TradingEnv({"obs_dim": 20})
    with pytest.raises(ValueError, match="bogus"):
        TradingEnv({"bogus": 1})
    env = TradingEnv({"window": 10, "obs_dim": 28})  # exactly the features, no padding
    obs, _ = env.reset(seed=0)
    assert obs["agent_0"].shape == (28,)


def test_parallel_env_is_pettingzoo():
    env = parallel_env(num_agents=3, task="hard")
    obs, _ = env.reset(seed=1)
    assert set(obs) == {"agent_0", "agent_1", "agent_2"}
    assert env.get_task() == "hard"


def test_rewards_are_the_weighted_components():
    env = TradingEnv({"reward_weights": {"profit": 2.0, "exploration": 0.0}})
    env.reset(seed=0)
    core = env.core
    for step in range(5):
        actions = {a: np.array([(-1) ** step, 0.3, -0.2], np.float32) for a in env.agents}
        _, rewards, terms, truncs, infos = env.step(actions)
        assert not terms["__all__"] and not truncs["__all__"]
        for agent, reward in rewards.items():
            parts = infos[agent]["reward_components"]
            assert set(parts) == set(core.reward_components)
            weighted = sum(core.reward_weights[k] * v for k, v in parts.items())
            assert reward == pytest.approx(weighted, rel=1e-5, abs=1e-7)
    assert core.reward_weights["profit"] == 2.0 and core.reward_weights["sharpe"] == 0.3


def test_weigh_matches_the_step_rewards_in_a_batch():
    core = TradingCore(TradingConfig(task="hard"), batch_size=8)
    rng = np.random.default_rng(0)
    core.reset(rng)
    for _ in range(20):
        actions = rng.uniform(-1.5, 1.5, size=(8, 5, 3)).astype(np.float32)
        result = core.step(actions, rng)
        assert set(result.components) == set(core.reward_components)
        for value in result.components.values():
            assert value.shape == (8, 5) and value.dtype == np.float32
        assert result.rewards.dtype == np.float32
        np.testing.assert_allclose(
            result.rewards, core.weigh(result.components), rtol=1e-5, atol=1e-6
        )


def test_signs_of_the_components():
    core = TradingCore(TradingConfig(), batch_size=4)
    rng = np.random.default_rng(3)
    core.reset(rng)
    for _ in range(30):
        result = core.step(rng.uniform(-1, 1, size=(4, 5, 3)).astype(np.float32), rng)
        parts = result.components
        assert np.all(parts["cooperation"] <= 0) and np.all(parts["risk"] <= 0)
        assert np.all(parts["transaction_cost"] <= 0) and np.all(parts["exploration"] >= 0)
        assert np.all(np.abs(parts["sharpe"]) <= 0.45 + 1e-6)
        # Cooperation is shared: every agent of a copy gets the same.
        assert np.all(parts["cooperation"] == parts["cooperation"][:, :1])


def test_doing_nothing_earns_exactly_nothing():
    for discrete in (False, True):
        core = TradingCore(TradingConfig(discrete=discrete, task="expert"), batch_size=3)
        rng = np.random.default_rng(0)
        core.reset(rng)
        for _ in range(10):
            actions = core.baseline_actions("flat", core.observe())
            assert np.array_equal(actions[0, 0], core.default_action())
            result = core.step(actions, rng)
            assert np.all(result.rewards == 0.0)


def test_time_limit_truncates_and_never_terminates():
    env = TradingEnv({"episode_length": 3})
    env.reset(seed=0)
    for step in range(3):
        _, _, terms, truncs, _ = env.step({a: np.zeros(3, np.float32) for a in env.agents})
        assert not terms["__all__"]
        assert truncs["__all__"] == (step == 2)


def test_full_position_moves_cash_and_pays_fees():
    env = TradingEnv({"num_agents": 2})
    env.reset(seed=0)
    long_ = {"agent_0": np.array([1.0, 1.0, 1.0], np.float32), "agent_1": np.zeros(3, np.float32)}
    obs, _, _, _, infos = env.step(long_)
    base = 20 + len(MARKET_FEATURES)
    cash, position = obs["agent_0"][base], obs["agent_0"][base + 1]
    assert position == 1.0 and cash < 0.0  # bought one unit worth ~ the whole balance
    assert obs["agent_1"][base : base + 2].tolist() == [1.0, 0.0]
    assert infos["agent_0"]["reward_components"]["transaction_cost"] < 0.0
    assert infos["agent_1"]["reward_components"]["transaction_cost"] == 0.0


def test_stop_loss_and_take_profit_close_the_position_at_the_next_step():
    for move, expected in [(-0.05, 0.0), (-0.005, 1.0), (0.15, 1.0), (0.25, 0.0)]:
        core = TradingCore(TradingConfig(num_agents=1), batch_size=1)
        rng = np.random.default_rng(0)
        core.reset(rng)
        long_ = np.array([[[1.0, -1.0, 1.0]]], np.float32)  # long, 1% stop, 20% take-profit
        core.step(long_, rng)
        position, cost = core._row[POSITION], core._row[COST]
        assert position[0, 0] == 1.0
        core._row[UNREALIZED][...] = move * cost  # as if the price had moved that much
        core.step(long_, rng)  # asks to stay long; a crossed stop or take-profit closes
        assert position[0, 0] == expected, move


def test_reset_with_a_mask_restarts_only_those_copies():
    core = TradingCore(TradingConfig(), batch_size=3)
    rng = np.random.default_rng(0)
    core.reset(rng)
    for _ in range(5):
        core.step(rng.uniform(-1, 1, size=(3, 5, 3)).astype(np.float32), rng)
    before = core.snapshot()
    core.reset(rng, np.array([False, True, False]))
    after = core.snapshot()
    for name in core.state_fields:
        assert np.array_equal(before[name][[0, 2]], after[name][[0, 2]]), name
    fresh = core.observe()[1]
    assert np.all(fresh[:, 20 + MARKET_FEATURES.index("time_left")] == 1.0)
    assert np.all(fresh[:, 21 + len(MARKET_FEATURES)] == 0.0)  # positions closed


def extreme_actions(discrete: bool, agents: int):
    if discrete:
        return st.lists(st.integers(0, len(DISCRETE_ACTIONS) - 1), min_size=agents, max_size=agents)
    value = st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False, width=32), st.sampled_from([0.0, -1e6, 1e6, 1.0])
    )
    return st.lists(st.lists(value, min_size=3, max_size=3), min_size=agents, max_size=agents)


@pytest.mark.parametrize("discrete", [False, True])
def test_random_and_adversarial_actions_never_produce_nan(discrete):
    agents = [f"agent_{i}" for i in range(5)]
    dtype = np.int64 if discrete else np.float32

    @settings(max_examples=25, deadline=None)
    @given(
        st.lists(extreme_actions(discrete, 5), min_size=1, max_size=12),
        st.sampled_from(LEVELS),
        st.integers(0, 2**16),
        st.integers(1, 40),
    )
    def run(steps, level, seed, episode_length):
        env = TradingEnv({"discrete": discrete, "task": level, "episode_length": episode_length})
        obs, _ = env.reset(seed=seed)
        # Repeat the drawn joint actions, alternating their signs, over 60 steps.
        for t in range(60):
            joint = np.asarray(steps[t % len(steps)], dtype=dtype)
            if not discrete and t % 2:
                joint = -joint
            obs, rewards, terms, truncs, infos = env.step(dict(zip(agents, joint)))
            parts = [list(i["reward_components"].values()) for i in infos.values()]
            values = [*obs.values(), list(rewards.values()), env.state(), parts]
            assert all(np.isfinite(np.asarray(v, dtype=np.float64)).all() for v in values)
            assert all(env.observation_spaces[a].contains(o) for a, o in obs.items())
            assert env.state_space.contains(env.state())
            assert not terms["__all__"]
            if truncs["__all__"]:
                env.reset()

    run()


def test_a_long_episode_of_extreme_actions_stays_finite():
    core = TradingCore(TradingConfig(task="expert", episode_length=2000), batch_size=64)
    rng = np.random.default_rng(0)
    core.reset(rng)
    for t in range(2000):
        actions = np.where(rng.random((64, 5, 3)) < 0.5, -1e6, 1e6).astype(np.float32)
        if t % 7 == 0:
            actions[:] = 0.0
        result = core.step(actions, rng)
        assert np.isfinite(result.rewards).all()
    obs, state = core.observe(), core.global_state()
    assert np.isfinite(obs).all() and np.isfinite(state).all()
    assert np.abs(obs).max() <= 10.0 and np.abs(state).max() <= 10.0


def _score_table(discrete: bool) -> dict[str, dict[str, float]]:
    env_cls = registry.ENVS["trading"].load()
    table = {}
    for level in LEVELS:
        config = {"discrete": discrete, "task": level}
        table[level] = {
            policy: float(episode_scores("trading", policy, config, episodes=20).mean())
            for policy in (RANDOM, *env_cls.baselines)
        }
    return table


@pytest.mark.parametrize("discrete", [False, True])
def test_default_baseline_beats_random_at_every_level(discrete):
    table = _score_table(discrete)
    policies = list(table["easy"])
    print(f"\ntrading, discrete={discrete}: mean per-agent return over 20 episodes")
    print(f"{'level':>8}" + "".join(f"{p:>16}" for p in policies))
    for level, row in table.items():
        print(f"{level:>8}" + "".join(f"{row[p]:>16.3f}" for p in policies))
    for level, row in table.items():
        assert row["momentum"] > row[RANDOM] + 0.5, (level, row)
        assert row["flat"] == 0.0
    # Trend-following pays where trends stand out of the noise.
    assert table["easy"]["momentum"] > table["easy"]["flat"]


def test_baseline_actions_are_valid():
    for discrete in (False, True):
        core = TradingCore(TradingConfig(discrete=discrete), batch_size=4)
        core.reset(np.random.default_rng(0))
        obs = core.observe()
        for name in core.baselines:
            actions = core.baseline_actions(name, obs)
            assert actions.shape == (4, 5, *core.action_space.shape)
            assert all(core.action_space.contains(a) for a in actions.reshape(20, -1).squeeze())
        with pytest.raises(ValueError, match="unknown baseline"):
            core.baseline_actions("oracle", obs)
    env = TradingEnv({})
    obs, _ = env.reset(seed=0)
    assert np.array_equal(
        env.heuristic_actions(obs)["agent_0"], env.baseline_actions(obs)["agent_0"]
    )


def test_batched_core_matches_single_copies():
    config = TradingConfig(task="hard")
    batched = TradingCore(config, batch_size=3)
    batched.reset(np.random.default_rng(0))
    snapshot = batched.snapshot()
    singles = []
    for b in range(3):
        core = TradingCore(config, batch_size=1)
        core.reset(np.random.default_rng(1))
        core.restore({name: value[b : b + 1] for name, value in snapshot.items()})
        singles.append(core)
    rng, action_rng = np.random.default_rng(2), np.random.default_rng(3)
    for _ in range(40):
        actions = action_rng.uniform(-1.2, 1.2, size=(3, 5, 3)).astype(np.float32)
        before = copy.deepcopy(rng.bit_generator.state)
        result = batched.step(actions, rng)
        for b, core in enumerate(singles):
            # Copy b's draws are the b-th block of the batch's draws (4 per copy).
            own = np.random.default_rng()
            own.bit_generator.state = before
            own.standard_normal(4 * b)
            single = core.step(actions[b : b + 1], own)
            np.testing.assert_allclose(single.rewards[0], result.rewards[b], rtol=1e-5, atol=1e-6)
            for name, value in single.components.items():
                np.testing.assert_allclose(
                    value[0], result.components[name][b], rtol=1e-5, atol=1e-6
                )
            np.testing.assert_allclose(
                core.observe()[0], batched.observe()[b], rtol=1e-5, atol=1e-6
            )
            np.testing.assert_allclose(
                core.global_state()[0], batched.global_state()[b], rtol=1e-5, atol=1e-6
            )
            assert single.truncated[0] == result.truncated[b]


def test_counterfactual_rewards_show_the_agents_contribution():
    env = TradingEnv({})
    env.reset(seed=4)
    for _ in range(3):
        env.step({a: np.array([0.5, 0.0, 0.0], np.float32) for a in env.agents})
    actions = {a: np.array([0.5, 0.0, 0.0], np.float32) for a in env.agents}
    actions["agent_0"] = np.array([-1.0, 0.5, 0.5], np.float32)  # a big trade against the herd
    counterfactual = env.counterfactual_rewards(actions, "agent_0")
    state = env.state()
    _, rewards, _, _, _ = env.step(actions)
    # Its own reward changes (fees, exploration, PnL) and so do the others' (shared
    # cooperation term and the price its order moved).
    assert counterfactual["agent_0"] != pytest.approx(rewards["agent_0"])
    assert counterfactual["agent_1"] != pytest.approx(rewards["agent_1"])
    assert state.shape == env.state_space.shape

    # An agent that already does the default action has no contribution.
    env2 = TradingEnv({})
    env2.reset(seed=4)
    idle = {a: np.zeros(3, np.float32) for a in env2.agents}
    idle["agent_1"] = np.array([1.0, 0.0, 0.0], np.float32)
    counterfactual = env2.counterfactual_rewards(idle, "agent_0")
    _, rewards, _, _, _ = env2.step(idle)
    assert counterfactual == pytest.approx(rewards)


def test_levels_change_volatility_not_spaces():
    spreads = {}
    for level in LEVELS:
        core = TradingCore(TradingConfig(task=level), batch_size=64)
        rng = np.random.default_rng(0)
        core.reset(rng)
        flat = core.baseline_actions("flat", core.observe())
        for _ in range(50):
            core.step(flat, rng)
        spreads[level] = float(np.std(core._returns[:, -50:]))
        assert core.observation_space.shape == (50,)
    assert spreads["easy"] < spreads["medium"] < spreads["hard"] < spreads["expert"]
    assert spreads["expert"] < 0.1  # per step: 0.8 / sqrt(252) plus impact


def test_sentiment_leads_the_next_return():
    core = TradingCore(TradingConfig(task="easy"), batch_size=512)
    rng = np.random.default_rng(0)
    core.reset(rng)
    flat = core.baseline_actions("flat", core.observe())
    column = 20 + MARKET_FEATURES.index("sentiment")
    signals, returns = [], []
    for _ in range(60):
        signals.append(core.observe()[:, 0, column])
        core.step(flat, rng)
        returns.append(core._returns[:, -1].copy())
    correlation = np.corrcoef(np.concatenate(signals), np.concatenate(returns))[0, 1]
    assert correlation > 0.1


def test_indicators_match_direct_computations():
    from rl_platform.envs.trading import HISTORY
    from rl_platform.envs.trading.layout import _ema_weights

    core = TradingCore(TradingConfig(task="hard"), batch_size=2)
    rng = np.random.default_rng(0)
    core.reset(rng)
    for _ in range(30):
        core.step(rng.uniform(-1, 1, size=(2, 5, 3)).astype(np.float32), rng)
    returns, w = core._returns[1], 20
    log_price = np.cumsum(returns) - returns.sum()  # after each return, minus the current

    def macd(lag):
        prices = log_price[: HISTORY - lag]
        return prices @ (_ema_weights(12, len(prices)) - _ema_weights(26, len(prices)))

    series = np.array([macd(lag) for lag in range(HISTORY - 1)] + [0.0])
    window = log_price[-w:]
    expected = {
        "macd": 10 * series[0],
        "signal": 10 * series @ _ema_weights(9, HISTORY)[::-1],
        "trend": 30 * returns[-w:].mean(),
        "gap": -10 * window.mean(),
        "rsi": returns[-w:].sum() / np.abs(returns[-w:]).sum(),
        "bollinger": -window.mean() / (2 * window.std()),
        "volatility": 30 * np.sqrt(np.mean(returns[-w:] ** 2)),
        "log_price": core._m["log_price"][1, 0],
    }
    obs = core.observe()[1, 0]
    np.testing.assert_allclose(obs[:w], 30 * returns[-w:], rtol=1e-5)
    for name, value in expected.items():
        assert obs[w + MARKET_FEATURES.index(name)] == pytest.approx(value, rel=1e-4, abs=1e-6), (
            name
        )
