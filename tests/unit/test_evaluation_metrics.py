"""Coordination metrics with known answers, and every env's traces and coordination figures."""

import gymnasium as gym
import numpy as np
import pytest

from rl_platform import registry
from rl_platform.envs import metrics
from rl_platform.envs.coverage import CoverageConfig, CoverageCore
from rl_platform.envs.matrix_games import TwoStepGameConfig, TwoStepGameCore
from rl_platform.envs.rendezvous import RendezvousConfig, RendezvousCore
from rl_platform.envs.resource_allocation import ResourceAllocationConfig, ResourceAllocationCore
from rl_platform.envs.supply_chain import SupplyChainConfig, SupplyChainCore
from rl_platform.envs.trading import IMPACT, TradingConfig, TradingCore

RANDOM = "random"
CORE_ENV_IDS = sorted(i for i in registry.ENVS if hasattr(registry.ENVS[i].load(), "core_cls"))


def random_actions(space: gym.Space, lead: tuple[int, ...], rng: np.random.Generator):
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=lead)
    return rng.uniform(space.low, space.high, size=(*lead, *space.shape)).astype(space.dtype)


def record_episodes(core, policy, seed=0, switch=None):
    """Play one episode per copy; return (trace, actions, alive, rewards) stacked over time.

    `switch` = (step, level) switches the level before that step.
    """
    rng, action_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    core.reset(rng)
    running = np.ones(core.batch_size, dtype=bool)
    traces, taken, alive, rewards = [], [], [], []
    while running.any():
        if switch is not None and len(alive) == switch[0]:
            core.switch_task(switch[1])
        obs = core.observe()
        if policy == RANDOM:
            actions = random_actions(core.action_space, obs.shape[:2], action_rng)
        else:
            actions = core.baseline_actions(policy, obs)
        result = core.step(actions, rng)
        traces.append(core.trace())
        taken.append(actions)
        alive.append(running.copy())
        rewards.append(result.components)
        running &= ~(result.terminated | result.truncated)
    trace = {k: np.stack([t[k] for t in traces]) for k in core.trace_fields}
    components = {k: np.stack([r[k] for r in rewards]) for k in rewards[0]}
    return trace, np.stack(taken), np.stack(alive), components


def make_core(env_id, batch_size=4, **config):
    env_cls = registry.ENVS[env_id].load()
    return env_cls.core_cls(env_cls.config_model.model_validate(config), batch_size)


def coordination(core, policy, seed=0, switch=None):
    trace, actions, alive, _ = record_episodes(core, policy, seed, switch)
    return type(core).coordination(trace, actions, alive)


# --- metrics with known answers ---------------------------------------------------------


def test_gini_of_a_fair_split_is_zero_and_of_one_taking_all_is_n_minus_one_over_n():
    assert metrics.gini(np.full(5, 0.3)) == pytest.approx(0.0, abs=1e-6)
    assert metrics.gini(np.zeros(4)) == 0.0
    for n in (2, 4, 10):
        everything = np.zeros(n)
        everything[1] = 2.0
        assert metrics.gini(everything) == pytest.approx((n - 1) / n, rel=1e-5)
    # sum_ij |x_i - x_j| / (2 n sum x) for 1, 2, 3: 8 / 36
    assert metrics.gini(np.array([3.0, 1.0, 2.0])) == pytest.approx(8 / 36, rel=1e-5)


def test_gini_works_along_any_axis():
    values = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])  # columns: fair, unfair
    np.testing.assert_allclose(metrics.gini(values, axis=0), [0.0, 2 / 3], atol=1e-6)
    np.testing.assert_allclose(metrics.gini(values.T), [0.0, 2 / 3], atol=1e-6)


def test_bullwhip_ratio_is_one_for_passed_on_demand_and_four_for_doubled_deviations():
    rng = np.random.default_rng(0)
    demand = rng.poisson(10.0, size=(50, 3)).astype(float)  # (T, B)
    passed = np.repeat(demand[..., None], 2, axis=-1)  # (T, B, N=2)
    np.testing.assert_allclose(metrics.bullwhip_ratio(passed, demand), 1.0)
    doubled = demand.mean(0) + 2.0 * (demand - demand.mean(0))
    np.testing.assert_allclose(metrics.bullwhip_ratio(doubled[..., None], demand), 4.0)
    # steps outside the episode are ignored; constant demand cannot be measured: 1.0
    alive = np.ones((50, 3), dtype=bool)
    alive[40:, 1] = False
    junk = passed.copy()
    junk[40:, 1] = 1e6
    np.testing.assert_allclose(metrics.bullwhip_ratio(junk, demand, alive)[1], 1.0)
    assert metrics.bullwhip_ratio(np.ones((5, 1)), np.full(5, 3.0)).tolist() == [1.0]


def test_fill_rate_is_demand_met_on_time_over_demand():
    demand = np.array([10.0, 10.0, 0.0, 20.0])
    met = np.array([10.0, 5.0, 0.0, 15.0])
    assert metrics.fill_rate(demand, met) == pytest.approx(30 / 40)
    assert metrics.fill_rate(demand, met, np.array([1, 1, 1, 0])) == pytest.approx(15 / 20)
    assert metrics.fill_rate(np.zeros(3), np.zeros(3)) == 1.0
    per_copy = metrics.fill_rate(np.ones((4, 2)), np.array([[1, 0]] * 4, dtype=float))
    np.testing.assert_allclose(per_copy, [1.0, 0.0])


def test_action_correlation_of_identical_independent_and_mirrored_continuous_agents():
    rng = np.random.default_rng(0)
    one = rng.uniform(-1, 1, size=(200, 4, 1, 2))
    identical = np.repeat(one, 3, axis=2)  # (T, B, N=3, 2)
    assert metrics.action_correlation(identical) == pytest.approx(1.0)
    independent = rng.uniform(-1, 1, size=(200, 4, 3, 2))
    assert abs(metrics.action_correlation(independent)) < 0.05
    mirrored = np.concatenate([one, -one], axis=2)
    assert metrics.action_correlation(mirrored) == pytest.approx(-1.0)


def test_action_correlation_skips_constant_agents_and_dead_steps_and_never_returns_nan():
    rng = np.random.default_rng(1)
    moving = rng.normal(size=(30, 2, 1, 1))
    constant = np.ones((30, 2, 1, 1))
    assert metrics.action_correlation(np.concatenate([moving, constant], axis=2)) == 0.0
    assert metrics.action_correlation(np.ones((30, 2, 2, 1))) == 0.0
    assert metrics.action_correlation(np.zeros((1, 2, 2, 1))) == 0.0
    identical = np.repeat(moving, 2, axis=2)
    alive = np.ones((30, 2), dtype=bool)
    alive[20:] = False
    identical[20:, :, 1] = rng.normal(size=(10, 2, 1))  # after the episodes ended
    assert metrics.action_correlation(identical, alive) == pytest.approx(1.0)


def test_cohen_kappa_known_values():
    # p_o = 3/4; marginals (1/2, 1/2) and (1/4, 3/4): p_e = 1/2; kappa = 1/2
    assert metrics.cohen_kappa([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(0.5)
    assert metrics.cohen_kappa([0, 1, 2, 1], [0, 1, 2, 1]) == pytest.approx(1.0)
    assert metrics.cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    assert metrics.cohen_kappa([2, 2, 2], [2, 2, 2]) == 0.0  # undefined
    assert metrics.cohen_kappa([], []) == 0.0


def test_discrete_action_correlation_is_kappa_pooled_over_steps_and_copies():
    rng = np.random.default_rng(2)
    one = rng.integers(0, 5, size=(100, 4, 1))
    assert metrics.action_correlation(np.repeat(one, 3, axis=2), discrete=True) == 1.0
    independent = rng.integers(0, 5, size=(100, 4, 3))
    assert abs(metrics.action_correlation(independent, discrete=True)) < 0.05
    assert metrics.action_correlation(np.zeros((10, 2, 3), np.int64), discrete=True) == 0.0


def test_masked_helpers():
    values = np.arange(6.0).reshape(3, 2)  # (T, B)
    alive = np.array([[1, 1], [1, 0], [0, 0]], dtype=bool)
    assert metrics.masked_mean(values, alive) == pytest.approx((0 + 1 + 2) / 3)
    np.testing.assert_allclose(metrics.masked_sum(values, alive), [2.0, 1.0])
    np.testing.assert_allclose(metrics.last_alive(values, alive), [2.0, 1.0])
    assert metrics.masked_mean(values, np.zeros((3, 2), bool), default=-1.0) == -1.0


# --- every env: traces and coordination ------------------------------------------------


@pytest.mark.parametrize("env_id", CORE_ENV_IDS)
@pytest.mark.parametrize("discrete", [False, True])
def test_trace_has_the_declared_fields_and_coordination_a_unit_score(env_id, discrete):
    core = make_core(env_id, discrete=discrete)
    assert core.trace_fields
    b, n = core.batch_size, core.num_agents
    for policy in (RANDOM, *core.baselines):
        trace, actions, alive, _ = record_episodes(core, policy)
        assert set(trace) == set(core.trace_fields)
        for name, values in trace.items():
            assert values.shape[1:] in {(b,), (b, n)}, (name, values.shape)
            assert np.issubdtype(values.dtype, np.floating) and np.isfinite(values).all(), name
        figures = type(core).coordination(trace, actions, alive)
        assert 0.0 <= figures["score"] <= 1.0, (policy, figures)
        assert all(isinstance(v, float) and np.isfinite(v) for v in figures.values()), figures


@pytest.mark.parametrize("env_id", CORE_ENV_IDS)
def test_trace_arrays_are_new_not_views_of_the_state(env_id):
    core = make_core(env_id)
    rng = np.random.default_rng(0)
    core.reset(rng)
    core.step(random_actions(core.action_space, (4, core.num_agents), rng), rng)
    first = core.trace()
    kept = {k: v.copy() for k, v in first.items()}
    core.step(random_actions(core.action_space, (4, core.num_agents), rng), rng)
    for name in core.trace_fields:
        np.testing.assert_array_equal(first[name], kept[name])


def test_supply_chain_order_passing_has_no_bullwhip_and_base_stock_amplifies_up_the_chain():
    core = SupplyChainCore(SupplyChainConfig(), batch_size=8)
    passing = coordination(core, "order_demand")
    echelons = [passing[f"bullwhip_echelon_{i}"] for i in range(4)]
    assert echelons == pytest.approx([1.0] * 4, abs=0.1)
    random = coordination(core, RANDOM)
    assert passing["bullwhip_ratio"] < random["bullwhip_ratio"]
    # the textbook bullwhip effect: an order-up-to policy on a smoothed forecast
    base_stock = coordination(core, "base_stock")
    ratios = [base_stock[f"bullwhip_echelon_{i}"] for i in range(4)]
    assert ratios == sorted(ratios) and ratios[0] > 2.0
    assert base_stock["service_level"] > coordination(core, "s_S")["service_level"] + 0.2


def test_supply_chain_service_level_counts_demand_served_from_stock():
    core = SupplyChainCore(SupplyChainConfig(), batch_size=4)
    nothing = np.full((4, 4, 3), -1.0, dtype=np.float32)  # order nothing, ever
    rng = np.random.default_rng(0)
    core.reset(rng)
    traces = []
    for _ in range(30):
        core.step(nothing, rng)
        traces.append(core.trace())
    trace = {k: np.stack([t[k] for t in traces]) for k in core.trace_fields}
    figures = core.coordination(trace, np.zeros((30, 4, 4, 3)), np.ones((30, 4), bool))
    # stock (2) and the pipeline (3) cover about 5 steps of demand of 30
    assert 0.05 < figures["service_level"] < 0.3
    assert figures["bullwhip_ratio"] == 0.0  # constant orders


def test_resource_allocation_proportional_requests_are_fairer_than_random():
    for discrete in (False, True):
        core = ResourceAllocationCore(
            ResourceAllocationConfig(task="hard", discrete=discrete), batch_size=8
        )
        proportional, random = coordination(core, "proportional"), coordination(core, RANDOM)
        assert proportional["gini"] < random["gini"]
        assert proportional["score"] > random["score"]


def test_resource_allocation_figures_match_the_rewards():
    core = ResourceAllocationCore(ResourceAllocationConfig(task="expert"), batch_size=4)
    trace, actions, alive, rewards = record_episodes(core, RANDOM)
    figures = core.coordination(trace, actions, alive)
    assert figures["gini"] == pytest.approx(1.0 - rewards["fairness"].mean(), abs=1e-5)
    assert figures["satisfaction"] == pytest.approx(rewards["satisfaction"].mean(), abs=1e-5)
    assert 0.0 < figures["utilization"] <= 1.0 and 0.0 < figures["efficiency"] <= 1.0


def test_requesting_nothing_is_perfectly_fair_and_scores_zero():
    core = ResourceAllocationCore(ResourceAllocationConfig(), batch_size=2)
    rng = np.random.default_rng(0)
    core.reset(rng)
    core.step(np.zeros((2, 4, 3), dtype=np.float32), rng)
    trace = {k: v[None] for k, v in core.trace().items()}
    figures = core.coordination(trace, np.zeros((1, 2, 4, 3)), np.ones((1, 2), bool))
    assert figures["gini"] == 0.0 and figures["score"] == 0.0


def test_trading_identical_agents_herd_random_ones_do_not_and_flat_ones_cause_no_impact():
    core = TradingCore(TradingConfig(), batch_size=4)
    momentum = coordination(core, "momentum")
    assert momentum["herding"] == pytest.approx(1.0)
    assert momentum["market_impact"] > 0 and momentum["impact_cost"] > 0
    assert abs(coordination(core, RANDOM)["herding"]) < 0.1
    flat = coordination(core, "flat")
    assert flat == {"market_impact": 0.0, "impact_cost": 0.0, "herding": 0.0, "score": 0.0}


def test_trading_impact_of_a_known_order():
    core = TradingCore(TradingConfig(num_agents=3, episode_length=5), batch_size=2)
    rng = np.random.default_rng(0)
    core.reset(rng)
    buy = np.zeros((2, 3, 3), dtype=np.float32)
    buy[:, :, 0] = 1.0  # every agent goes fully long: net order 3 units
    buy[:, :, 1:] = 1.0  # widest stops
    core.step(buy, rng)
    trace = {k: v[None] for k, v in core.trace().items()}
    np.testing.assert_allclose(trace["order_flow"], 3.0)
    np.testing.assert_allclose(trace["position"], 1.0)
    figures = core.coordination(trace, buy[None], np.ones((1, 2), bool))
    assert figures["market_impact"] == pytest.approx(IMPACT * 3.0)  # from price 1.0
    assert figures["impact_cost"] == pytest.approx(IMPACT * 9.0)


def test_coverage_greedy_is_optimal_and_crowding_on_one_target_collides():
    for level in ("easy", "hard"):
        core = CoverageCore(CoverageConfig(task=level, num_agents=4, num_targets=6), 4)
        greedy = coordination(core, "greedy")
        assert greedy["score"] == pytest.approx(1.0) and greedy["collisions"] == 0.0
        same = coordination(core, "same")
        assert same["collisions"] == 1.0 and same["score"] < greedy["score"]
        assert same["targets_covered"] == pytest.approx(1 / 6)


def test_coverage_figure_is_the_mean_coverage_reward():
    core = CoverageCore(CoverageConfig(task="expert"), batch_size=4)
    trace, actions, alive, rewards = record_episodes(core, RANDOM)
    figures = core.coordination(trace, actions, alive)
    assert figures["coverage"] == pytest.approx(rewards["coverage"].mean(), rel=1e-5)
    assert figures["score"] >= figures["coverage"]  # N = K: the best covers everything


def test_rendezvous_meeting_scores_high_standing_still_zero_and_regrouping_counts():
    core = RendezvousCore(RendezvousConfig(), batch_size=4)
    assert coordination(core, "centroid")["score"] > 0.9
    still = coordination(core, "still")
    assert still["score"] == 0.0 and still["final_spread"] == pytest.approx(still["mean_spread"])
    # scattered across the arena at step 15: the spread jumps, then the team regroups
    regroup = coordination(
        RendezvousCore(RendezvousConfig(task="easy"), 4), "centroid", switch=(15, "expert")
    )
    assert regroup["score"] > 0.8


def test_two_step_game_rate_of_the_optimal_joint_action():
    core = TwoStepGameCore(TwoStepGameConfig(), batch_size=400)
    assert coordination(core, "optimal")["score"] == 1.0
    assert coordination(core, "safe")["score"] == 0.0
    random = coordination(core, RANDOM)
    assert random["reached_2b"] == pytest.approx(0.5, abs=0.08)
    assert random["score"] == pytest.approx(0.125, abs=0.05)  # 1/2 x 1/4
