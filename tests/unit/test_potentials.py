"""Reward-shaping potentials: each env's are higher in states closer to its goal, its
heuristic ends episodes with higher ones than random play, and the conformance check
refuses potentials that change the env or are not finite."""

import gymnasium as gym
import numpy as np
import pytest

from rl_platform import registry
from rl_platform.envs.base import BatchedCore
from rl_platform.envs.checks import check_env
from rl_platform.envs.rendezvous import RendezvousConfig, RendezvousCore, RendezvousEnv
from rl_platform.envs.resource_allocation import (
    ResourceAllocationConfig,
    ResourceAllocationCore,
)
from rl_platform.envs.supply_chain import (
    BACKLOG,
    PIPE,
    STOCK,
    SupplyChainConfig,
    SupplyChainCore,
)
from rl_platform.envs.trading import EQUITY, POSITION, TradingConfig, TradingCore

RANDOM = "random"
COPIES = 64


def random_actions(space: gym.Space, shape: tuple[int, int], rng: np.random.Generator):
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=shape)
    return rng.uniform(space.low, space.high, size=(*shape, *space.shape)).astype(np.float32)


def final_potentials(core: BatchedCore, policy: str, seed: int = 0) -> dict[str, float]:
    """Mean over copies and agents of each potential when the episodes end."""
    rng, action_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    core.reset(rng)
    done = np.zeros(core.batch_size, dtype=bool)
    while not done.all():  # every copy's episode has the same length: they end together
        obs = core.observe()
        if policy == RANDOM:
            actions = random_actions(core.action_space, obs.shape[:2], action_rng)
        else:
            actions = core.baseline_actions(policy, obs)
        result = core.step(actions, rng)
        done |= result.terminated | result.truncated
    return {name: float(core.potential(name).mean()) for name in core.potentials}


def assert_baseline_ends_higher(core: BatchedCore, names: tuple[str, ...] | None = None):
    baseline = final_potentials(core, core.baselines[0])
    random = final_potentials(core, RANDOM)
    for name in names or core.potentials:
        assert baseline[name] > random[name], (name, baseline, random)


@pytest.mark.parametrize("discrete", [False, True])
def test_rendezvous_potentials_peak_when_agents_meet(discrete):
    config = RendezvousConfig(num_agents=4, discrete=discrete, task="medium")
    core = RendezvousCore(config, batch_size=2)
    core.reset(np.random.default_rng(0))
    core._pos[0] = 0.3  # all at one point
    core._pos[1] = [[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]  # a square
    for name in core.potentials:
        phi = core.potential(name)
        assert phi.shape == (2, 4) and phi.dtype == np.float32
        np.testing.assert_allclose(phi[0], 0.0, atol=1e-6)
        assert (phi[1] < phi[0]).all(), name
    # The square's corners are sqrt(2) x 2/3 from the others' centroid; the mean distance
    # between two corners is (4 x 1 + 2 x sqrt(2)) / 6.
    np.testing.assert_allclose(core.potential("proximity")[1], -np.sqrt(2) * 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(core.potential("spread")[1], -(4 + 2 * np.sqrt(2)) / 6, rtol=1e-6)
    # "proximity" is the proximity reward of the state a step lands in.
    result = core.step(core.default_actions(core.observe()), np.random.default_rng(1))
    np.testing.assert_array_equal(result.components["proximity"], core.potential("proximity"))

    assert_baseline_ends_higher(RendezvousCore(config, COPIES))


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("level", ["easy", "medium", "hard"])
def test_resource_allocation_potentials_rise_as_needs_are_met(discrete, level):
    config = ResourceAllocationConfig(num_agents=4, num_resources=2, discrete=discrete, task=level)
    core = ResourceAllocationCore(config, batch_size=3)
    core.reset(np.random.default_rng(0))
    need = core._need.copy()
    core._grant[0] = need[0]  # every need met
    core._grant[1] = need[1] / 2  # half of every need met
    core._grant[1, 0] = 2 * need[1, 0]  # ... but agent 0's met twice over (no better)
    core._grant[2] = 0.0  # nothing granted (as after reset)
    unmet = core.potential("unmet_need")
    np.testing.assert_allclose(unmet[0], 0.0, atol=1e-5)
    np.testing.assert_allclose(unmet[1], [0.0, -0.5, -0.5, -0.5], atol=1e-5)
    np.testing.assert_allclose(unmet[2], -1.0, atol=1e-5)
    team = core.potential("team_unmet_need")
    assert (team == team[:, :1]).all()  # shared
    assert team[0, 0] > team[1, 0] > team[2, 0]

    # Stating one's needs beats random requests (at expert, bursts blur the difference).
    assert_baseline_ends_higher(ResourceAllocationCore(config, COPIES))


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("level", ["easy", "expert"])
def test_supply_chain_potentials_peak_at_the_base_stock_target(discrete, level):
    core = SupplyChainCore(SupplyChainConfig(discrete=discrete, task=level), batch_size=3)
    core.reset(np.random.default_rng(0))
    # After reset: stock 2 + 3 in transit = 5 against a target of 1 x (3 + 1) x 1.5 = 6.
    np.testing.assert_allclose(core.potential("base_stock_gap"), -1 / 6, rtol=1e-5)
    np.testing.assert_array_equal(core.potential("backlog"), 0.0)
    core._ledger[0, STOCK] = 3.0  # at the target
    core._ledger[1:, STOCK] = 0.0  # 3 below it
    core._ledger[2, PIPE:] = 0.0  # 6 below it, 7 at the retailer, which owes 1 more
    core._ledger[2, BACKLOG, 0] = 1.0
    gap = core.potential("base_stock_gap")
    np.testing.assert_allclose(gap, [[0.0] * 4, [-0.5] * 4, [-7 / 6, -1, -1, -1]], rtol=1e-5)
    np.testing.assert_allclose(core.potential("backlog")[2], [-0.1, 0, 0, 0])

    config = SupplyChainConfig(discrete=discrete, task=level)
    assert_baseline_ends_higher(SupplyChainCore(config, COPIES))


@pytest.mark.parametrize("discrete", [False, True])
def test_trading_potentials_reward_gains_and_penalize_exposure(discrete):
    config = TradingConfig(num_agents=3, discrete=discrete, task="easy")
    core = TradingCore(config, batch_size=1)
    core.reset(np.random.default_rng(0))
    np.testing.assert_array_equal(core.potential("position_risk"), 0.0)  # flat
    np.testing.assert_array_equal(core.potential("equity"), 0.0)  # the starting balance
    core._book[0, POSITION] = [0.0, 0.5, -1.0]
    core._book[0, EQUITY] = [1.0, 1.1, 0.9]
    risk = core.potential("position_risk")[0]
    assert risk[0] == 0.0 > risk[1] > risk[2]
    np.testing.assert_allclose(risk[2], 2 * risk[1])
    np.testing.assert_allclose(core.potential("equity")[0], [0.0, 1.0, -1.0], atol=1e-6)

    # Momentum ends richer than random trading at easy, where trends pay; staying flat
    # carries no risk, which random positions do.
    core = TradingCore(config, COPIES)
    assert_baseline_ends_higher(core, ("equity",))
    flat, random = final_potentials(core, "flat"), final_potentials(core, RANDOM)
    assert flat["position_risk"] == 0.0 > random["position_risk"]


@pytest.mark.parametrize("env_id", ["rendezvous", "resource_allocation", "supply_chain", "trading"])
def test_env_declares_potentials_and_refuses_others(env_id):
    env = registry.ENVS[env_id].load()({})
    assert env.potentials and env.potentials == env.core.potentials
    env.reset(seed=0)
    for name in env.potentials:
        assert set(env.potential(name)) == set(env.possible_agents)
    with pytest.raises(ValueError, match=env.potentials[0]):
        env.potential("no_such_potential")


class DriftingCore(RendezvousCore):
    """Reading its potential moves the agents."""

    def potential(self, name: str) -> np.ndarray:
        self._pos *= 0.5
        return super().potential(name)


class NanCore(RendezvousCore):
    """Its "proximity" potential is NaN."""

    def potential(self, name: str) -> np.ndarray:
        return np.full_like(super().potential(name), np.nan)


class SilentCore(RendezvousCore):
    """Answers any name, declared or not."""

    def potential(self, name: str) -> np.ndarray:
        return super().potential("proximity")


@pytest.mark.parametrize("core_cls", [DriftingCore, NanCore, SilentCore])
def test_potential_check_catches_broken_potentials(core_cls, monkeypatch):
    env_cls = type("BrokenEnv", (RendezvousEnv,), {"core_cls": core_cls})
    monkeypatch.setitem(registry.ENVS, "broken", registry.EnvEntry("broken", "", env_cls))
    results = {r.name: r for r in check_env("broken")}
    assert not results["potentials finite and leave no trace"].passed
    assert results["counterfactual step leaves no trace"].passed  # the rest is sound


def test_potential_check_passes_envs_without_potentials():
    results = {r.name: r for r in check_env("two_step_game")}
    assert results["potentials finite and leave no trace"].passed
