"""Hierarchical control: the env strategies, the K-step meta-controller env (rewards summed
over K base steps, episode ends inside a block, spaces, RLlib's checks), the controller
used for evaluation, the algorithm configs and the refusals of settings it cannot run."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rl_platform import registry
from rl_platform.advanced.hierarchical import (
    META_MODULE_ID,
    SHARE_INFO,
    STRATEGY_INFO,
    HierarchicalEnv,
    LearnedHierarchyEnv,
    StrategyController,
    StrategyMetricsCallback,
    build_env,
    meta_observation,
)
from rl_platform.builder import reward_env_config
from rl_platform.config import ConfigError, load_experiment
from rl_platform.envs.checks import rollout
from rl_platform.envs.trading import STRATEGIES, TradingConfig, TradingCore
from rl_platform.rewards import RewardEnv

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "trading_hierarchical.yaml"
NAMES = list(STRATEGIES)


def experiment(*overrides: str):
    return load_experiment(EXPERIMENT, list(overrides))


def hierarchical_env(*overrides: str) -> HierarchicalEnv:
    return HierarchicalEnv(reward_env_config(experiment(*overrides)))


def market_observations(discrete: bool, level: str) -> np.ndarray:
    """Observations (B, N, obs_dim) of 64 copies after 30 steps of the momentum baseline."""
    core = TradingCore(TradingConfig(discrete=discrete, task=level), 64)
    rng = np.random.default_rng(0)
    core.reset(rng)
    for _ in range(30):
        core.step(core.baseline_actions("momentum", core.observe()), rng)
    return core.observe()


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("level", ["easy", "expert"])
@pytest.mark.parametrize("name", NAMES)
def test_each_trading_strategy_gives_valid_actions_for_every_agent(name, level, discrete):
    obs = market_observations(discrete, level)
    core = TradingCore(TradingConfig(discrete=discrete), 1)  # any core answers (obs only)
    actions = core.strategy_actions(name, obs)
    if discrete:
        assert actions.shape == obs.shape[:2] and actions.dtype == np.int64
        assert ((actions >= 0) & (actions < core.action_space.n)).all()
    else:
        assert actions.shape == (*obs.shape[:2], 3) and actions.dtype == np.float32
        assert np.isfinite(actions).all() and (np.abs(actions) <= 1.0).all()
        assert (np.abs(actions[..., 0]) <= STRATEGIES[name].max_position).all()


def test_strategies_differ_and_unknown_names_are_refused():
    obs = market_observations(False, "expert")
    core = TradingCore(TradingConfig(), 1)
    targets = {name: core.strategy_actions(name, obs)[..., 0] for name in NAMES}
    assert len({t.tobytes() for t in targets.values()}) == len(NAMES)
    # The contrarian bets against the gap to the fundamental (the log price).
    log_price = obs[..., 20 + 9]
    stretched = np.abs(log_price) > 0.3
    assert stretched.any()
    assert (np.sign(targets["contrarian"][stretched]) == -np.sign(log_price[stretched])).all()
    with pytest.raises(ValueError, match="no strategy 'yolo'"):
        core.strategy_actions("yolo", obs)


def test_envs_without_strategies_declare_none():
    declared = {env_id: entry.load().strategies for env_id, entry in registry.ENVS.items()}
    assert declared["trading"] == tuple(NAMES)
    assert all(isinstance(names, tuple) for names in declared.values())


def test_one_meta_step_plays_k_base_steps_and_sums_their_rewards():
    env = hierarchical_env("hierarchy.every=4", "env.config.random_levels=[]")
    twin = RewardEnv(reward_env_config(experiment("env.config.random_levels=[]")))
    obs, _ = env.reset(seed=3)
    base_obs, _ = twin.reset(seed=3)
    choice = {a: i % len(NAMES) for i, a in enumerate(env.possible_agents)}
    for _ in range(3):
        obs, rewards, terms, truncs, infos = env.step(choice)
        expected = dict.fromkeys(env.possible_agents, 0.0)
        for _ in range(4):
            names = {a: NAMES[choice[a]] for a in env.possible_agents}
            base_obs, base_rewards, *_ = twin.step(twin.strategy_actions(base_obs, names))
            for agent, reward in base_rewards.items():
                expected[agent] += reward
        assert rewards == pytest.approx(expected)
        for agent in env.possible_agents:
            assert np.array_equal(obs[agent][:-5], base_obs[agent])
            assert obs[agent][-5:].tolist() == np.eye(5)[choice[agent]].tolist()
            assert infos[agent][STRATEGY_INFO] == NAMES[choice[agent]]
        assert not terms["__all__"] and not truncs["__all__"]


def test_an_episode_ending_inside_a_block_ends_the_meta_step_with_its_partial_sum():
    env = hierarchical_env("hierarchy.every=10", "env.config.episode_length=25")
    env.reset(seed=0)
    flags = []
    for step in range(3):
        action = dict.fromkeys(env.possible_agents, 3 if step < 2 else 4)
        _, rewards, terms, truncs, infos = env.step(action)
        flags.append(truncs["__all__"])
    assert flags == [False, False, True] and not terms["__all__"]
    assert env.inner.inner.core.get_task() in ("easy", "hard")
    # 3 decisions per agent: contrarian twice, momentum once.
    assert infos["agent_0"][SHARE_INFO] == pytest.approx(
        {"aggressive": 0, "conservative": 0, "balanced": 0, "contrarian": 2 / 3, "momentum": 1 / 3}
    )
    assert "episode_rewards" in infos["agent_0"]  # RewardEnv's summary passes through
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(dict.fromkeys(env.possible_agents, 0))


def test_spaces_reset_observation_and_rllib_checks():
    from pettingzoo.test import parallel_api_test
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    from rl_platform.envs.base import CoreParallelEnv

    env = hierarchical_env()
    obs, _ = env.reset(seed=1)
    for agent in env.possible_agents:
        assert env.action_spaces[agent] == gym.spaces.Discrete(5)
        assert env.observation_spaces[agent].shape == (55,)
        assert env.observation_spaces[agent].contains(obs[agent])
        assert not obs[agent][-5:].any()  # no strategy in force yet
    check_multiagent_environments(hierarchical_env())
    parallel_api_test(CoreParallelEnv(hierarchical_env()), num_cycles=50)  # PettingZoo's
    first, second = (rollout(hierarchical_env(), seed=5, steps=30) for _ in range(2))
    for a, b in zip(first, second, strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="out of range"):
        env.step(dict.fromkeys(env.possible_agents, 5))


def test_controller_chooses_every_k_steps_and_plays_the_chosen_strategies():
    core = TradingCore(TradingConfig(), 8)
    calls = []

    def choose(meta):
        calls.append(meta[..., -5:].copy())
        return np.full(meta.shape[:2], len(calls) % 5)

    controller = StrategyController(core, NAMES, 3, choose)
    controller.reset()
    rng = np.random.default_rng(0)
    core.reset(rng)
    for step in range(7):
        obs = core.observe()
        actions = controller(obs)
        expected = core.strategy_actions(NAMES[len(calls) % 5], obs)
        assert np.array_equal(actions, expected), step
        core.step(actions, rng)
    assert len(calls) == 3  # steps 0, 3 and 6
    assert not calls[0].any() and (calls[1] == np.eye(5)[1]).all()
    meta = meta_observation(np.zeros((2, 3, 4)), np.array([[0, -1, 4], [1, 2, 3]]), 5)
    assert meta.shape == (2, 3, 9) and meta[0, 1, 4:].sum() == 0 and meta[0, 2, 8] == 1


@pytest.mark.parametrize("algorithm", ["ppo", "ippo", "mappo"])
def test_algorithm_configs_train_the_meta_controller(algorithm):
    from rl_platform.builder import build_algorithm_config

    config = build_algorithm_config(experiment(f"algorithm.id={algorithm}"))
    assert StrategyMetricsCallback in config.callbacks_class
    env = config.env(config.env_config)
    space = env.observation_spaces["agent_0"]
    if algorithm == "ppo":
        assert isinstance(env, HierarchicalEnv) and space.shape == (55,)
    else:  # GlobalStateEnv around the hierarchical env; + the agent's one-hot index
        assert isinstance(env.inner, HierarchicalEnv)
        assert space["obs"].shape == (55 + 5,)
    assert env.action_spaces["agent_0"] == gym.spaces.Discrete(5)


def test_learned_low_level_alternates_decisions_with_k_base_steps():
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    overrides = ["hierarchy.low_level=learned", "hierarchy.every=3"]
    overrides += ["env.config.episode_length=8"]
    env = build_env(reward_env_config(experiment(*overrides)))
    assert isinstance(env, LearnedHierarchyEnv)
    base = [f"agent_{i}" for i in range(5)]
    meta = [f"meta_{a}" for a in base]
    assert env.possible_agents == meta + base
    assert env.action_spaces["meta_agent_0"] == gym.spaces.Discrete(5)
    assert env.action_spaces["agent_0"] == gym.spaces.Box(-1, 1, (3,))
    assert env.observation_spaces["agent_0"].shape == (55,)
    check_multiagent_environments(build_env(reward_env_config(experiment(*overrides))))

    obs, _ = env.reset(seed=2)
    observed, since = [sorted(obs)], dict.fromkeys(base, 0.0)
    while True:
        actions = {a: (1 if a.startswith("meta_") else np.zeros(3)) for a in obs}
        obs, rewards, terms, truncs, infos = env.step(actions)
        observed.append(sorted(obs))
        for agent in base:
            since[agent] += rewards.get(agent, 0.0)
        if "meta_agent_0" in obs:  # the meta-controllers get the rewards since their choice
            assert rewards["meta_agent_0"] == pytest.approx(since["agent_0"])
            assert obs["meta_agent_0"][-5:].tolist() == np.eye(5)[1].tolist()
            since = dict.fromkeys(base, 0.0)
        elif set(obs) == set(base) and set(actions) == set(meta):
            assert rewards == dict.fromkeys(meta, 0.0)  # a decision moves nothing
            assert obs["agent_0"][-5:].tolist() == np.eye(5)[1].tolist()
        if truncs["__all__"]:
            break
    # decide, 3 base steps, decide, 3 base steps, decide, 2 base steps (the episode ends)
    pattern = [meta] + ([base] * 3 + [meta]) * 2 + [base] * 2 + [sorted(base + meta)]
    assert observed == [sorted(p) for p in pattern]
    assert not terms["__all__"] and SHARE_INFO in infos["meta_agent_0"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            ["env.id=coverage", "env.config={}", "rewards.weights={}"],
            "envs that do: resource_allocation, supply_chain, trading",
        ),
        (["hierarchy.strategies=[aggressive, yolo]"], "unknown strategy 'yolo'"),
        (["hierarchy.strategies=[momentum, momentum]"], "twice"),
        (["hierarchy.strategies=[momentum]"], "at least two"),
        (["algorithm.id=qmix", "algorithm.hyperparams={}"], "cannot train a meta-controller"),
        (["resources.sampler=batched"], "resources.sampler: batched"),
        (["evaluation.every=5"], "evaluation.every"),
    ],
)
def test_unsupported_settings_are_refused(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        experiment(*overrides)
    message = str(info.value)
    assert "hierarchy:" in message and fragment in message, message


@pytest.mark.parametrize("shared", [True, False])
def test_learned_low_level_maps_meta_controllers_to_their_own_module(shared):
    from rl_platform.builder import build_algorithm_config

    config = build_algorithm_config(
        experiment("hierarchy.low_level=learned", f"algorithm.shared_policy={shared}")
    )
    base = {"shared"} if shared else {f"agent_{i}" for i in range(5)}
    assert set(config.policies) == base | {META_MODULE_ID}
    assert config.policy_mapping_fn("meta_agent_3", None) == META_MODULE_ID
    assert config.policy_mapping_fn("agent_3", None) == ("shared" if shared else "agent_3")


STRATEGY_ENVS = [e for e in sorted(registry.ENVS) if registry.ENVS[e].load().strategies]


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("env_id", STRATEGY_ENVS)
def test_every_declared_strategy_acts_within_the_action_space(env_id, discrete):
    env_cls = registry.ENVS[env_id].load()
    core = env_cls.core_cls(env_cls.config_model.model_validate({"discrete": discrete}), 16)
    rng = np.random.default_rng(0)
    core.reset(rng)
    for step in range(20):
        obs = core.observe()
        for name in env_cls.strategies:
            actions = core.strategy_actions(name, obs)
            assert actions.shape == (*obs.shape[:2], *core.action_space.shape), name
            assert all(
                core.action_space.contains(a) for a in actions.reshape(-1, *actions.shape[2:])
            )
        core.step(core.strategy_actions(env_cls.strategies[step % 2], obs), rng)
    assert {"trading", "resource_allocation", "supply_chain"} <= set(STRATEGY_ENVS)


def test_the_safety_shield_judges_the_strategies_actions():
    shield = ["safety={constraints: [{name: max_position, limit: 0.5}], penalty: 1.0}"]
    env = hierarchical_env(*shield, "env.config.random_levels=[easy]")
    env.reset(seed=0)
    _, rewards, *_ = env.step(dict.fromkeys(env.possible_agents, NAMES.index("aggressive")))
    totals = env.inner.episode_totals("agent_0")  # RewardEnv's sums over the K base steps
    assert totals["interventions"] > 0  # full positions replaced by the fallback ...
    assert totals["safety"] == -totals["interventions"]  # ... and penalised
    assert rewards["agent_0"] == pytest.approx(totals["total"])
