"""The constraint shield: shielded random policies never break a limit; no Ray."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from rl_platform import registry
from rl_platform.envs.coverage import CoverageCore
from rl_platform.envs.rendezvous import RendezvousConfig, RendezvousCore, RendezvousEnv
from rl_platform.envs.resource_allocation import (
    ResourceAllocationConfig,
    ResourceAllocationCore,
)
from rl_platform.envs.supply_chain import SupplyChainConfig, SupplyChainCore, SupplyChainEnv
from rl_platform.envs.trading import TradingConfig, TradingCore, TradingEnv
from rl_platform.safety import (
    OBSERVATIONS,
    InterventionLog,
    SafetySpec,
    Shield,
    ShieldedPolicy,
    UnjudgedConstraint,
    check_safety,
    shield_action_dict,
    violation_rate,
)

BATCH = 4
STEPS = 1000


def spec_of(*constraints: tuple[str, float], **kwargs) -> SafetySpec:
    return SafetySpec(constraints=[{"name": n, "limit": v} for n, v in constraints], **kwargs)


def random_actions(core, rng: np.random.Generator) -> np.ndarray:
    """Uniform random actions (B, N, ...): a Box's range, or any discrete index."""
    space, shape = core.action_space, (core.batch_size, core.num_agents)
    if hasattr(space, "n"):
        return rng.integers(space.n, size=shape)
    return rng.uniform(space.low, space.high, size=(*shape, *space.shape)).astype(np.float32)


# (core class, config, constraints, fallback) of the must-show cases.
CASES = {
    "trading_max_position": (TradingCore, TradingConfig(num_agents=3), [("max_position", 0.5)]),
    "trading_both": (
        TradingCore,
        TradingConfig(num_agents=3),
        [("max_position", 0.5), ("max_order", 0.5)],
    ),
    "trading_discrete": (
        TradingCore,
        TradingConfig(num_agents=3, discrete=True),
        [("max_position", 0.5)],
    ),
    "supply_chain_max_order": (SupplyChainCore, SupplyChainConfig(), [("max_order", 2.0)]),
    "supply_chain_discrete": (
        SupplyChainCore,
        SupplyChainConfig(discrete=True),
        [("max_order", 1.5)],
    ),
    "resource_allocation_max_share": (
        ResourceAllocationCore,
        ResourceAllocationConfig(task="hard"),
        [("max_share", 0.4)],
    ),
    "resource_allocation_discrete": (
        ResourceAllocationCore,
        ResourceAllocationConfig(task="hard", discrete=True),
        [("max_share", 0.4)],
    ),
    "rendezvous_max_speed": (RendezvousCore, RendezvousConfig(), [("max_speed", 0.8)]),
}


def play(core, spec: SafetySpec | None, seed: int, steps: int = STEPS):
    """Random actions for `steps` steps, shielded when spec is given.

    Returns the number of violations among the applied actions (checked before each
    step with constraint_violations), and the shield (or None).
    """
    rng, act_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    shield = Shield(core, spec) if spec is not None else None
    checks = spec or spec_of(*[])
    core.reset(rng)
    violations = 0
    for _ in range(steps):
        obs = core.observe()
        actions = random_actions(core, act_rng)
        if shield is not None:
            actions, record = shield.filter(obs, actions)
            assert not record.unresolved.any()
        for c in checks.constraints:
            violations += int(core.constraint_violations(c.name, c.limit, actions).sum())
        result = core.step(actions, rng)
        done = result.terminated | result.truncated
        if done.any():
            core.reset(rng, mask=done)
    return violations, shield


@pytest.mark.parametrize("case", list(CASES))
def test_shielded_random_policy_never_violates(case):
    core_cls, config, constraints = CASES[case]
    spec = spec_of(*constraints)
    broken = 0
    rng, act_rng = np.random.default_rng(3), np.random.default_rng(4)
    core = core_cls(config, BATCH)
    core.reset(rng)
    for _ in range(200):  # the unshielded random policy does break the limit
        actions = random_actions(core, act_rng)
        broken += sum(
            int(core.constraint_violations(c.name, c.limit, actions).sum())
            for c in spec.constraints
        )
        result = core.step(actions, rng)
        if (done := result.terminated | result.truncated).any():
            core.reset(rng, mask=done)
    assert broken > 0
    violations, shield = play(core_cls(config, BATCH), spec, seed=7)
    assert violations == 0
    assert shield.log.interventions > 0
    assert 0 < shield.log.rate < 1
    assert shield.log.agent_steps == STEPS * BATCH * core.num_agents


def test_interventions_logged_with_all_fields_and_jsonl_round_trip(tmp_path):
    core = TradingCore(TradingConfig(num_agents=3), BATCH)
    spec = spec_of(("max_position", 0.5), ("max_order", 0.5))
    _, shield = play(core, spec, seed=1, steps=50)
    log = shield.log
    assert log.entries
    first = log.entries[0].to_dict()
    assert set(first) == {
        "step", "copy", "agent", "constraint", "limit", "original", "replacement", "unresolved",
    }  # fmt: skip
    assert first["constraint"] in ("max_position", "max_order")
    assert first["agent"].startswith("agent_") and isinstance(first["original"], list)
    assert len(first["original"]) == 3 and len(first["replacement"]) == 3
    assert sum(log.counts.values()) == len(log.entries) + log.dropped
    path = log.to_jsonl(tmp_path / "interventions.jsonl")
    assert InterventionLog.read_jsonl(path) == log.entries
    summary = log.summary()
    assert summary["interventions"] == log.interventions and summary["rate"] == log.rate


def test_log_memory_is_bounded_but_counts_are_complete():
    core = TradingCore(TradingConfig(num_agents=3), BATCH)
    spec = spec_of(("max_position", 0.0))
    rng = np.random.default_rng(0)
    core.reset(rng)
    shield = Shield(core, spec, max_entries=5)
    ones = np.ones((BATCH, 3, 3), dtype=np.float32)
    for _ in range(3):
        shield.filter(core.observe(), ones)
    assert len(shield.log.entries) == 5
    assert shield.log.counts["max_position"] == 3 * BATCH * 3
    assert shield.log.dropped == 3 * BATCH * 3 - 5
    assert shield.log.rate == 1.0


def test_compliant_actions_are_untouched_bitwise():
    core = TradingCore(TradingConfig(num_agents=3), BATCH)
    core.reset(np.random.default_rng(0))
    shield = Shield(core, spec_of(("max_position", 0.5)))
    actions = np.random.default_rng(1).uniform(-1, 1, (BATCH, 3, 3)).astype(np.float32)
    actions[..., 0] = np.float32(0.3)  # every target within the limit
    safe, record = shield.filter(core.observe(), actions)
    assert not record.mask.any() and safe.tobytes() == actions.tobytes()
    mixed = actions.copy()
    mixed[0, 1, 0] = 0.9
    safe, record = shield.filter(core.observe(), mixed)
    assert record.mask.sum() == 1 and record.mask[0, 1]
    keep = ~record.mask
    assert safe[keep].tobytes() == mixed[keep].tobytes()
    assert mixed[0, 1, 0] == np.float32(0.9)  # the caller's array is not changed


def test_replacement_is_the_fallback_baselines_action():
    core = SupplyChainCore(SupplyChainConfig(), BATCH)
    rng = np.random.default_rng(2)
    core.reset(rng)
    spec = spec_of(("max_order", 2.0), fallback="order_demand")
    shield = Shield(core, spec)
    obs = core.observe()
    actions = np.ones((BATCH, 4, 3), dtype=np.float32)  # orders 4 x mean demand
    safe, record = shield.filter(obs, actions)
    assert record.mask.all() and not record.used_default.any()
    np.testing.assert_array_equal(safe, core.baseline_actions("order_demand", obs))
    # The default fallback is the env's first baseline.
    assert Shield(core, spec_of(("max_order", 2.0))).fallback == "base_stock"


def test_fallback_that_violates_falls_back_to_default_then_unresolved():
    core = TradingCore(TradingConfig(num_agents=3), BATCH)
    core.reset(np.random.default_rng(0))
    ones = np.ones((BATCH, 3, 3), dtype=np.float32)
    # buy_and_hold targets 1 > 0.5: the default (flat) replaces it and complies.
    shield = Shield(core, spec_of(("max_position", 0.5), fallback="buy_and_hold"))
    safe, record = shield.filter(core.observe(), ones)
    assert record.used_default.all() and not record.unresolved.any()
    np.testing.assert_array_equal(safe, np.zeros_like(ones))
    # A negative limit: no action complies; the default is kept and flagged.
    shield = Shield(core, spec_of(("max_position", -1.0)))
    safe, record = shield.filter(core.observe(), ones)
    assert record.unresolved.all()
    np.testing.assert_array_equal(safe, np.zeros_like(ones))
    assert all(e.unresolved for e in shield.log.entries)


def test_same_seed_gives_the_same_interventions():
    spec = spec_of(("max_share", 0.3))
    logs = []
    for _ in range(2):
        core = ResourceAllocationCore(ResourceAllocationConfig(task="hard"), BATCH)
        _, shield = play(core, spec, seed=11, steps=100)
        logs.append(shield.log)
    assert logs[0].entries == logs[1].entries and logs[0].counts == logs[1].counts


def test_shielded_policy_wraps_any_batched_policy():
    core = SupplyChainCore(SupplyChainConfig(), BATCH)
    shield = Shield(core, spec_of(("max_order", 1.0)))
    greedy = ShieldedPolicy(lambda obs: np.ones((*obs.shape[:-1], 3), np.float32), shield)
    core.play_episodes(greedy, np.random.default_rng(0))
    assert greedy.last is not None and greedy.last.mask.all()
    assert greedy.log.rate == 1.0


def test_violation_rate_counts_unshielded_violations():
    core = TradingCore(TradingConfig(num_agents=3), BATCH)
    rng = np.random.default_rng(0)
    spec = spec_of(("max_position", 0.5), ("max_order", 10.0))
    rates = violation_rate(core, lambda obs: random_actions(core, rng), 200, rng, spec)
    assert 0.3 < rates["max_position"] < 0.7  # |U(-1, 1)| > 0.5 half the time
    assert rates["max_order"] == 0.0
    assert rates["any"] == rates["max_position"]


def test_action_dict_of_a_single_copy_view():
    env = SupplyChainEnv({})
    env.reset(seed=0)
    shield = Shield.for_env(env, spec_of(("max_order", 2.0)))
    compliant = np.array([-0.5, 0.0, -1.0], dtype=np.float32)  # order 1
    actions = {a: compliant for a in env.possible_agents}
    actions["agent_2"] = np.ones(3, dtype=np.float32)
    safe, entries = shield_action_dict(env, actions, shield)
    assert [e.agent for e in entries] == ["agent_2"] and entries[0].constraint == "max_order"
    assert all(safe[a] is actions[a] for a in env.possible_agents if a != "agent_2")
    obs = env.core.observe()
    np.testing.assert_array_equal(
        safe["agent_2"], env.core.baseline_actions("base_stock", obs)[0, 2]
    )
    env.step(safe)
    with pytest.raises(ValueError, match="another env"):
        shield_action_dict(SupplyChainEnv({}), actions, shield)


def test_bad_specs_are_refused_with_clear_messages():
    with pytest.raises(ValueError, match=r"unknown constraint 'max_leverage'.*max_position: "):
        check_safety(spec_of(("max_leverage", 1.0)), TradingEnv)
    with pytest.raises(ValueError, match="declares no constraints"):
        check_safety(spec_of(("max_speed", 1.0)), CoverageCore)
    with pytest.raises(ValueError, match=r"unknown fallback 'cautious'.*momentum.*'default'"):
        check_safety(spec_of(("max_position", 0.5), fallback="cautious"), TradingEnv)
    check_safety(spec_of(("max_speed", 0.5), fallback="default"), RendezvousEnv)
    with pytest.raises(pydantic.ValidationError, match="penalty"):
        spec_of(("max_position", 0.5), penalty=-1.0)
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        SafetySpec(constraints=[], shield_mode="hard")
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        SafetySpec(constraints=[{"name": "max_order", "limit": 1.0, "unit": "x"}])
    with pytest.raises(pydantic.ValidationError, match="listed twice"):
        spec_of(("max_order", 1.0), ("max_order", 2.0))
    with pytest.raises(ValueError, match="unknown constraint"):
        Shield(TradingCore(TradingConfig(), 1), spec_of(("max_share", 0.5)))


def test_disabled_shield_passes_everything():
    core = TradingCore(TradingConfig(num_agents=3), BATCH)
    core.reset(np.random.default_rng(0))
    shield = Shield(core, spec_of(("max_position", 0.0), enabled=False))
    ones = np.ones((BATCH, 3, 3), dtype=np.float32)
    safe, record = shield.filter(core.observe(), ones)
    assert safe is ones and not record.mask.any() and shield.log.rate == 0.0


def test_penalties_per_intervened_agent():
    core = TradingCore(TradingConfig(num_agents=3), 1)
    core.reset(np.random.default_rng(0))
    shield = Shield(core, spec_of(("max_position", 0.5), penalty=0.1))
    actions = np.zeros((1, 3, 3), dtype=np.float32)
    actions[0, 2, 0] = 1.0
    _, record = shield.filter(core.observe(), actions)
    np.testing.assert_allclose(record.penalties(shield.spec.penalty), [[0.0, 0.0, 0.1]])


@pytest.mark.parametrize("env_id", sorted(registry.ENVS))
def test_constraint_checks_leave_state_and_randomness_alone(env_id):
    env_cls = registry.ENVS[env_id].load()
    core_cls = getattr(env_cls, "core_cls", None)
    if core_cls is None:
        pytest.skip("not a platform core")
    assert env_cls.constraints == core_cls.constraints
    for name, description in core_cls.constraints.items():
        assert name.isidentifier() and description.strip()
    core = core_cls(env_cls.config_model(), BATCH)
    rng = np.random.default_rng(0)
    core.reset(rng)
    core.step(random_actions(core, rng), rng)
    before, rng_state = core.snapshot(), rng.bit_generator.state
    actions = random_actions(core, np.random.default_rng(1))
    for name in core_cls.constraints:
        flags = core.constraint_violations(name, 0.5, actions)
        assert flags.shape == (BATCH, core.num_agents) and flags.dtype == bool
    for key, value in core.snapshot().items():
        np.testing.assert_array_equal(value, before[key])
    assert rng.bit_generator.state == rng_state
    with pytest.raises(ValueError, match="no constraint"):
        core.constraint_violations("no_such_limit", 0.5, actions)


def test_trading_max_position_is_the_position_after_the_step():
    core = TradingCore(TradingConfig(num_agents=3), BATCH)
    rng = np.random.default_rng(5)
    core.reset(rng)
    act_rng = np.random.default_rng(6)
    for _ in range(100):
        actions = random_actions(core, act_rng)
        flags = core.constraint_violations("max_position", 0.5, actions)
        core.step(actions, rng)
        np.testing.assert_array_equal(flags, np.abs(core.trace()["position"]) > 0.5)


def test_supply_chain_safety_stock_is_the_position_after_ordering():
    core = SupplyChainCore(SupplyChainConfig(), 1)
    core.reset(np.random.default_rng(0))
    # At reset each echelon holds 2 in stock and 3 in transit: position 5, +1 ordered.
    default = np.broadcast_to(core.default_action(), (1, 4, 3))
    assert not core.constraint_violations("min_safety_stock", 5.9, default).any()
    assert core.constraint_violations("min_safety_stock", 6.1, default).all()


def test_one_shield_judges_from_state_or_from_observations():
    """Rendezvous' speed limit reads the same from state and observations: same actions."""
    spec = spec_of(("max_speed", 0.3))
    core = RendezvousCore(RendezvousConfig(), BATCH)
    judge = RendezvousCore(RendezvousConfig(), 1)  # no state: reads the observations only
    by_state, by_obs = Shield(core, spec), Shield(judge, spec, judge=OBSERVATIONS)
    rng = np.random.default_rng(3)
    core.reset(rng)
    for _ in range(20):
        obs, actions = core.observe(), random_actions(core, rng)
        safe, record = by_state.filter(obs, actions)
        served, seen = by_obs.filter(obs, actions)
        np.testing.assert_array_equal(served, safe)
        np.testing.assert_array_equal(seen.mask, record.mask)
        core.step(safe, rng)
    assert by_obs.log.interventions == by_state.log.interventions > 0
    summary = by_obs.summary()
    assert summary["judged_from"] == "observations" and summary["fallback"] == by_obs.fallback
    assert summary["counts"] == {"max_speed": by_obs.log.interventions}


def test_absent_agents_are_neither_judged_nor_counted():
    spec = spec_of(("max_speed", 0.0))  # any move breaks it
    core = RendezvousCore(RendezvousConfig(), 2)
    shield = Shield(core, spec, judge=OBSERVATIONS)
    assert shield.summary()["counts"] == {"max_speed": 0}
    obs = np.zeros((2, core.num_agents, *core.observation_space.shape), np.float32)
    actions = np.ones((2, core.num_agents, *core.action_space.shape), np.float32)
    present = np.zeros((2, core.num_agents), dtype=bool)
    present[0, 0] = True
    safe, record = shield.filter(obs, actions, present)
    assert record.mask.tolist() == present.tolist()
    np.testing.assert_array_equal(safe[~present], actions[~present])
    assert shield.log.agent_steps == 1 and shield.log.interventions == 1


def test_a_judge_from_observations_refuses_what_it_cannot_judge():
    from rl_platform.envs.base import BatchedCore

    class Blind(RendezvousCore):
        def observed_violations(self, name, limit, obs, actions):
            return BatchedCore.observed_violations(self, name, limit, obs, actions)

    spec = spec_of(("max_speed", 0.5))
    with pytest.raises(UnjudgedConstraint, match="cannot judge constraint 'max_speed'") as err:
        Shield(Blind(RendezvousConfig(), 1), spec, judge=OBSERVATIONS)
    assert err.value.constraint == "max_speed"
    Shield(Blind(RendezvousConfig(), 1), spec)  # from the state it can
