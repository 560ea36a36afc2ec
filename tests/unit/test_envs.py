"""Every registered env passes the conformance checks, never emits NaN, has baselines
that beat random and switches level mid-episode; plus the rendezvous dynamics."""

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rl_platform import registry
from rl_platform.envs.checks import check_env
from rl_platform.envs.coverage import CoverageConfig, CoverageCore
from rl_platform.envs.rendezvous import RendezvousConfig, RendezvousCore, RendezvousEnv
from rl_platform.envs.resource_allocation import LEVELS as ALLOCATION_LEVELS
from rl_platform.envs.trading import LEVELS as TRADING_LEVELS
from rl_platform.evaluation.baselines import RANDOM, episode_scores

ENV_IDS = sorted(registry.ENVS)
LEVELS = ["easy", "medium", "hard", "expert"]
VARIANTS = [{}, {"discrete": True}, {"num_agents": 3, "task": "hard"}]
VARIANTS += [{"task": level} for level in LEVELS]


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize(
    "config", VARIANTS, ids=lambda c: "-".join(map(str, c.values())) or "default"
)
def test_registered_env_passes_conformance_checks(env_id, config):
    failures = [r for r in check_env(env_id, config) if not r.passed]
    assert not failures, failures


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_env_declares_the_four_levels_and_a_baseline(env_id):
    env_cls = registry.ENVS[env_id].load()
    assert tuple(env_cls.task_levels) == tuple(LEVELS)
    assert env_cls.baselines and env_cls.reward_components


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("level", LEVELS)
def test_default_baseline_beats_random(env_id, discrete, level):
    env_cls = registry.ENVS[env_id].load()
    config = {"discrete": discrete, "task": level}
    random_score = episode_scores(env_id, RANDOM, config, episodes=20).mean()
    baseline_score = episode_scores(env_id, env_cls.baselines[0], config, episodes=20).mean()
    assert baseline_score > random_score, (random_score, baseline_score)


def extreme_actions(space: gym.Space, count: int):
    """Actions far outside a Box (finite), or any valid discrete index."""
    if isinstance(space, gym.spaces.Discrete):
        return st.lists(st.integers(0, space.n - 1), min_size=count, max_size=count)
    value = st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False, width=32), st.sampled_from([0.0, -1e6, 1e6])
    )
    vector = st.lists(value, min_size=space.shape[0], max_size=space.shape[0])
    return st.lists(vector, min_size=count, max_size=count)


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("discrete", [False, True])
def test_random_and_adversarial_actions_never_produce_nan(env_id, discrete):
    env_cls = registry.ENVS[env_id].load()
    probe = env_cls({"discrete": discrete})
    space, agents = probe.action_spaces[probe.possible_agents[0]], probe.possible_agents

    @settings(max_examples=15, deadline=None)
    @given(
        st.lists(extreme_actions(space, len(agents)), min_size=1, max_size=12),
        st.sampled_from(LEVELS),
        st.integers(0, 2**16),
    )
    def run(steps, level, seed):
        env = env_cls({"discrete": discrete, "task": level})
        obs, _ = env.reset(seed=seed)
        for joint in steps:
            action = {a: np.asarray(v, dtype=space.dtype) for a, v in zip(agents, joint)}
            obs, rewards, terms, truncs, _ = env.step(action)
            values = [*obs.values(), list(rewards.values()), env.state()]
            assert all(np.isfinite(np.asarray(v, dtype=np.float64)).all() for v in values)
            for agent, o in obs.items():
                assert env.observation_spaces[agent].contains(o), (agent, o)
            if terms["__all__"] or truncs["__all__"]:
                env.reset()

    run()


def episode_return(env, policy, seed):
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, rewards, terms, truncs, _ = env.step(policy(env, obs))
        total += sum(rewards.values())
        done = terms["__all__"] or truncs["__all__"]
    return total


def random_policy(env, obs):
    return {a: env.action_spaces[a].sample() for a in env.possible_agents}


def heuristic_policy(env, obs):
    return env.heuristic_actions(obs)


@pytest.mark.parametrize("discrete", [False, True])
def test_heuristic_beats_random_by_a_wide_margin(discrete):
    env = RendezvousEnv({"discrete": discrete})
    for space in env.action_spaces.values():
        space.seed(0)
    rand = np.mean([episode_return(env, random_policy, s) for s in range(20)])
    heur = np.mean([episode_return(env, heuristic_policy, s) for s in range(20)])
    assert heur > rand + 20, (rand, heur)


def test_batched_core_matches_single_copies():
    config = RendezvousConfig(num_agents=4)
    batched = RendezvousCore(config, batch_size=3)
    batched.reset(np.random.default_rng(0))
    singles = []
    for b in range(3):
        core = RendezvousCore(config, batch_size=1)
        core.reset(np.random.default_rng(1))
        core._pos[:] = batched._pos[b]
        singles.append(core)
    rng = np.random.default_rng(2)
    for _ in range(10):
        actions = rng.uniform(-1, 1, size=(3, 4, 2)).astype(np.float32)
        result = batched.step(actions, rng)
        for b, core in enumerate(singles):
            single = core.step(actions[b : b + 1], rng)
            np.testing.assert_allclose(single.rewards[0], result.rewards[b], rtol=1e-6)
            np.testing.assert_allclose(core.observe()[0], batched.observe()[b], rtol=1e-6)


def test_reward_components_are_reported_and_weighted():
    env = RendezvousEnv({"reward_weights": {"proximity": 2.0, "effort": 0.0}})
    env.reset(seed=0)
    actions = {a: np.ones(2, dtype=np.float32) for a in env.possible_agents}
    _, rewards, _, _, infos = env.step(actions)
    for agent, reward in rewards.items():
        parts = infos[agent]["reward_components"]
        assert set(parts) == {"proximity", "effort"}
        assert reward == pytest.approx(2.0 * parts["proximity"], rel=1e-5)
        assert parts["effort"] == pytest.approx(-2.0)


def test_time_limit_truncates_and_never_terminates():
    env = RendezvousEnv({"episode_length": 3})
    env.reset(seed=0)
    for step in range(3):
        _, _, terms, truncs, _ = env.step(random_policy(env, None))
        assert not terms["__all__"]
        assert truncs["__all__"] == (step == 2)


def test_bad_actions_name_the_agent():
    env = RendezvousEnv({"discrete": True})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="agent_1: action 9 out of range"):
        env.step({"agent_0": 0, "agent_1": 9, "agent_2": 0})
    with pytest.raises(ValueError, match="no action for agent"):
        env.step({"agent_0": 0})


def test_unknown_env_option_is_refused():
    with pytest.raises(ValueError, match="bogus"):
        RendezvousEnv({"bogus": 1})


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_team_reward_mixes_in_the_mean_and_keeps_it(env_id):
    env_cls = registry.ENVS[env_id].load()
    envs = [env_cls({"team_reward": share}) for share in (0.0, 0.5, 1.0)]
    rewards = []
    for env in envs:
        env.reset(seed=3)
        env.action_spaces[env.possible_agents[0]].seed(3)
    action = {a: envs[0].action_spaces[a].sample() for a in envs[0].possible_agents}
    for _ in range(5):
        steps = [env.step(action) for env in envs]
        rewards = [np.array(list(step[1].values())) for step in steps]
        if steps[0][2]["__all__"] or steps[0][3]["__all__"]:
            break
        action = {a: envs[0].action_spaces[a].sample() for a in envs[0].possible_agents}
    individual, half, team = rewards
    np.testing.assert_allclose(team, individual.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(half, (individual + individual.mean()) / 2, rtol=1e-5, atol=1e-6)


CORE_ENV_IDS = [i for i in ENV_IDS if hasattr(registry.ENVS[i].load(), "core_cls")]


def twin_cores(env_id, steps=3, batch_size=4, **config):
    """Two cores of `env_id` at "easy" played `steps` identical random steps from one seed."""
    env_cls = registry.ENVS[env_id].load()
    model = env_cls.config_model.model_validate({"task": "easy", **config})
    cores = [env_cls.core_cls(model, batch_size) for _ in range(2)]
    rngs = [np.random.default_rng(0) for _ in range(2)]
    action_rng = np.random.default_rng(1)
    for core, rng in zip(cores, rngs):
        core.reset(rng)
    space, lead = cores[0].action_space, (batch_size, cores[0].num_agents)
    for _ in range(steps):
        if isinstance(space, gym.spaces.Discrete):
            actions = action_rng.integers(0, space.n, size=lead)
        else:
            actions = action_rng.uniform(-1, 1, size=(*lead, *space.shape)).astype(np.float32)
        for core, rng in zip(cores, rngs):
            core.step(actions, rng)
    return cores, rngs, actions


@pytest.mark.parametrize("env_id", CORE_ENV_IDS)
def test_switch_task_changes_the_dynamics_from_the_next_step(env_id):
    (kept, switched), (rng_kept, rng_switched), actions = twin_cores(env_id)
    switched.switch_task("expert")
    assert switched.get_task() == "expert" and kept.get_task() == "easy"
    results = [kept.step(actions, rng_kept), switched.step(actions, rng_switched)]
    same_obs = np.array_equal(kept.observe(), switched.observe())
    same_rewards = np.array_equal(results[0].rewards, results[1].rewards)
    if env_id == "two_step_game":  # every level is the same game
        assert same_obs and same_rewards
    else:
        assert not (same_obs and same_rewards)
    with pytest.raises(ValueError, match="unknown task level"):
        switched.switch_task("impossible")


def test_switch_task_applies_each_envs_level_parameters_at_once():
    (trading, _), _, _ = twin_cores("trading")
    trading.switch_task("expert")
    assert trading._sigma == pytest.approx(TRADING_LEVELS["expert"][0] / np.sqrt(252))

    (allocation, _), _, _ = twin_cores("resource_allocation")
    mean_need = allocation._mean_need.copy()
    allocation.switch_task("expert")
    ratio = ALLOCATION_LEVELS["expert"][0] / ALLOCATION_LEVELS["easy"][0]
    np.testing.assert_allclose(allocation._mean_need, mean_need * ratio, rtol=1e-5)

    (coverage, _), _, _ = twin_cores("coverage")
    assert (coverage._values == 1.0).all()
    coverage.switch_task("hard")  # lognormal values, drawn now
    assert not (coverage._values == 1.0).any()

    (rendezvous, _), _, _ = twin_cores("rendezvous", batch_size=64)
    assert np.abs(rendezvous._pos).max() < 0.25 + 3 * RendezvousConfig().max_speed
    rendezvous.switch_task("expert")  # scattered over the whole arena: regroup
    assert np.abs(rendezvous._pos).max() > 0.9
    with pytest.raises(RuntimeError, match="before reset"):
        CoverageCore(CoverageConfig(), 1).switch_task("hard")


SHIPPED_IDS = [*registry.ENVS, *registry.PETTINGZOO_SHORT_IDS]


@pytest.mark.parametrize("env_id", SHIPPED_IDS)
@pytest.mark.parametrize("discrete", [False, True])
def test_every_shipped_env_names_its_actions(env_id, discrete):
    """One distinct name per discrete action, or per dimension of a Box action."""
    entry = registry.get_env(env_id)
    env_cls = entry.load()
    fields = env_cls.config_model.model_fields
    if discrete and "discrete" not in fields:
        pytest.skip(f"{env_id} has one kind of action")
    config = {**entry.bound_config, **({"discrete": discrete} if "discrete" in fields else {})}
    core = env_cls.core_cls(env_cls.config_model.model_validate(config), 1)  # as rlp monitor
    env = env_cls(config)
    try:
        space = core.action_space
        size = space.n if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))
        names = core.action_names
        assert len(names) == size and len(set(names)) == size, names
        assert all(isinstance(n, str) and n for n in names)
        assert env.action_names == names  # the RLlib view says the same
    finally:
        env.close()
        getattr(core, "close", lambda: None)()
