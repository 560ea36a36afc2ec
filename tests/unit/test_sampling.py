"""The batched sampler against a step-by-step reference (no Ray: runners built in-process)."""

import logging

import numpy as np
import pytest
import torch
from lockstep import check_step
from ray.rllib.core.columns import Columns

from rl_platform.builder import build_algorithm_config
from rl_platform.config import load_experiment
from rl_platform.curriculum import set_task_of
from rl_platform.rewards import (
    EPISODE_INFO,
    TASK_INFO,
    episode_summary,
    mean_cosine_similarities,
    mean_cosine_similarity,
)
from rl_platform.sampling import BatchedEnvRunner, GlobalStateEnv, draw_actions, unsupported_reason


def experiment(env_id="rendezvous", env_config=None, envs=1, **sections):
    raw = {
        "name": "sampler",
        "seed": 0,
        "env": {"id": env_id, "config": {"num_agents": 3, "episode_length": 5}},
        "algorithm": {"id": "mappo", "shared_policy": True},
        "rewards": {
            "team": 0.5,
            "shaping": {"potential": "proximity", "weight": 0.5},
            "coordination": {"weight": 0.1},
        },
        "resources": {"num_env_runners": 0, "num_envs_per_env_runner": envs, "sampler": "batched"},
        "stop": {"training_iteration": 1},
    }
    if env_config is not None:
        raw["env"]["config"] = env_config
    if env_id != "rendezvous":
        raw["rewards"] = {}
    raw.update(sections)
    return load_experiment(raw)


def make_runner(exp, seed=7):
    config = build_algorithm_config(exp)
    runner = BatchedEnvRunner(config=config)
    runner._sampler.rng = np.random.default_rng(seed)
    return config, runner


def test_cosine_similarities_match_the_single_copy_function():
    vectors = np.random.default_rng(0).normal(size=(4, 3, 2))
    vectors[1, 2] = 0.0
    expected = np.stack([mean_cosine_similarity(v) for v in vectors])
    np.testing.assert_allclose(mean_cosine_similarities(vectors), expected)


@pytest.mark.parametrize("name", ["gaussian", "categorical"])
def test_numpy_draws_follow_rllibs_distributions(name):
    """The batched runner's numpy draws: RLlib's log-probs, moments and deterministic actions."""
    from ray.rllib.core.distribution.torch.torch_distribution import (
        TorchCategorical,
        TorchDiagGaussian,
    )

    rng = np.random.default_rng(0)
    rows = 200_000
    if name == "gaussian":
        dist_cls = TorchDiagGaussian
        inputs = np.tile(np.float32([[0.5, -1.0, np.log(0.3), np.log(2.0)]]), (rows, 1))
    else:
        dist_cls = TorchCategorical
        inputs = np.tile(np.float32([[1.0, 0.0, -1.0]]), (rows, 1))
    actions, logp = draw_actions(dist_cls, inputs, True, rng)
    dist = dist_cls.from_logits(torch.as_tensor(inputs))
    expected = dist.logp(torch.as_tensor(actions)).numpy()
    np.testing.assert_allclose(logp, expected, rtol=1e-4, atol=1e-5)
    if name == "gaussian":
        np.testing.assert_allclose(actions.mean(0), [0.5, -1.0], atol=0.02)
        np.testing.assert_allclose(actions.std(0), [0.3, 2.0], rtol=0.02)
    else:
        shares = np.bincount(actions, minlength=3) / rows
        np.testing.assert_allclose(
            shares, torch.softmax(torch.tensor([1.0, 0.0, -1.0]), 0), atol=0.005
        )
    greedy, none = draw_actions(dist_cls, inputs[:2], False, rng)
    assert none is None
    expected = dist_cls.from_logits(torch.as_tensor(inputs[:2])).to_deterministic().sample()
    np.testing.assert_allclose(greedy, expected.numpy())


def test_matches_a_step_by_step_reference():
    """B=1: observations, global states, rewards (team, shaping, coordination), episode
    boundaries, log-probs and the episodes' reward summaries equal the stock env's."""
    exp = experiment()
    config, runner = make_runner(exp)
    episodes = runner.sample(num_timesteps=12) + runner.sample(num_timesteps=4)
    assert [len(e) for e in episodes] == [5, 5, 2, 3, 1]
    assert [e.is_done for e in episodes] == [True, True, False, True, False]
    assert episodes[2].id_ == episodes[3].id_ and episodes[3].env_t_started == 2

    for episode in episodes:  # the fast-built agent episodes pass RLlib's own checks
        episode.validate()
        for sa in episode.agent_episodes.values():
            sa.validate()
            assert all(hasattr(sa, slot) for slot in type(sa).__slots__)
    env = GlobalStateEnv(dict(config.env_config))
    module = runner.module["shared"]
    obs, _ = env.reset(seed=7)
    for episode in episodes:
        agents = list(episode.agent_episodes)
        for t in range(len(episode)):
            obs, rewards, terms, truncs, infos = check_step(episode, t, obs, env, module)
        if episode.is_done:
            final = {a: episode.agent_episodes[a].get_observations(-1) for a in agents}
            for agent in agents:
                np.testing.assert_allclose(final[agent]["obs"], obs[agent]["obs"], rtol=1e-6)
            summary = episode_summary(episode)
            reference = infos["agent_0"][EPISODE_INFO]
            assert summary[TASK_INFO] == infos["agent_0"][TASK_INFO]
            assert summary[EPISODE_INFO].keys() == reference.keys()
            for name, value in reference.items():
                assert summary[EPISODE_INFO][name] == pytest.approx(value, rel=1e-5, abs=1e-6)
            obs, _ = env.reset()


def test_two_step_game_copies_match_the_stock_env_and_metrics_add_up():
    exp = experiment("two_step_game", {}, envs=4)
    config, runner = make_runner(exp)
    episodes = runner.sample(num_timesteps=4 * 5)
    env = GlobalStateEnv(dict(config.env_config))
    returns = []
    for episode in episodes:
        assert len(episode) == 2 or not episode.is_done
        if not episode.is_done:
            continue
        obs, _ = env.reset(seed=0)
        total = 0.0
        for t in range(2):
            actions = {a: sa.get_actions(t) for a, sa in episode.agent_episodes.items()}
            obs, rewards, *_ = env.step(actions)
            for a, sa in episode.agent_episodes.items():
                assert sa.get_rewards(t) == pytest.approx(rewards[a])
                np.testing.assert_allclose(sa.get_observations(t + 1)["obs"], obs[a]["obs"])
            total += sum(rewards.values())
        returns.append(total)
    assert len(returns) == 8  # 4 copies x 2 whole episodes in 5 steps
    metrics = runner.get_metrics()
    assert float(metrics["episode_return_mean"]) == pytest.approx(np.mean(returns))
    assert float(metrics["num_env_steps_sampled"]) == 20
    assert {a: float(v) for a, v in metrics["num_agent_steps_sampled"].items()} == {
        "agent_0": 20,
        "agent_1": 20,
    }
    assert float(metrics["num_episodes"]) == 8


def test_episode_flags_at_a_time_limit_are_the_stock_runners():
    """RLlib marks an episode whose agents are all done terminated, also at a time limit;
    the batched episodes carry the same flags, so the learners bootstrap alike."""
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    exp = experiment()
    stock_config = build_algorithm_config(
        load_experiment({**exp.model_dump(), "resources": {"num_env_runners": 0}})
    )
    stock = MultiAgentEnvRunner(config=stock_config)
    _, batched = make_runner(exp)
    for runner in (stock, batched):
        (episode,) = [e for e in runner.sample(num_timesteps=5) if e.is_done]
        flags = {(sa.is_terminated, sa.is_truncated) for sa in episode.agent_episodes.values()}
        assert (episode.is_terminated, episode.is_truncated) == (True, True)
        assert flags == {(True, True)}
    stock.stop()


def test_episode_metrics_add_up_over_the_chunks_of_several_sample_calls():
    """get_metrics() works from arrays, keeping no chunks: its episode returns, lengths and
    per-agent returns equal those of the returned chunks summed per episode."""
    from collections import defaultdict

    _, runner = make_runner(experiment(envs=3))
    chunks = []
    for steps in (2, 3, 4, 2, 5):  # fragments cutting the 5-step episodes anywhere
        chunks += runner.sample(num_timesteps=3 * steps)
    assert not runner._ongoing_episodes_for_metrics
    returns, lengths, agents = defaultdict(float), defaultdict(int), defaultdict(float)
    for chunk in chunks:
        returns[chunk.id_] += chunk.get_return()
        lengths[chunk.id_] += len(chunk)
        for agent, sa in chunk.agent_episodes.items():
            agents[(chunk.id_, agent)] += sa.get_return()
    done = [c.id_ for c in chunks if c.is_done]
    assert len(done) == 9  # 3 copies x 16 steps: 3 whole episodes each
    metrics = runner.get_metrics()
    assert float(metrics["episode_return_mean"]) == pytest.approx(
        np.mean([returns[i] for i in done])
    )
    assert float(metrics["episode_return_min"]) == pytest.approx(min(returns[i] for i in done))
    assert float(metrics["episode_len_mean"]) == 5 == float(metrics["episode_len_max"])
    assert {lengths[i] for i in done} == {5}
    for agent in ("agent_0", "agent_2"):
        expected = np.mean([agents[(i, agent)] for i in done])
        assert float(metrics["agent_episode_returns_mean"][agent]) == pytest.approx(expected)
    expected = np.mean([returns[i] for i in done])
    assert float(metrics["module_episode_returns_mean"]["shared"]) == pytest.approx(expected)


def test_rollout_blocks_are_reused_only_once_their_episodes_are_gone():
    _, runner = make_runner(experiment(envs=2))
    kept = runner.sample(num_timesteps=2 * 4)
    seen = [
        np.array(e.agent_episodes["agent_0"].get_observations(slice(0, 4))["obs"]) for e in kept
    ]

    def block_of(episodes):
        return id(episodes[0].agent_episodes["agent_0"].observations.data["obs"].base)

    block = block_of(kept)
    runner.sample(num_timesteps=2 * 4)  # `kept` still holds the first block: a new one
    now = [np.array(e.agent_episodes["agent_0"].get_observations(slice(0, 4))["obs"]) for e in kept]
    np.testing.assert_array_equal(now, seen)
    again = runner.sample(num_timesteps=2 * 4)
    assert block_of(again) != block
    del kept, again  # now nothing holds the first block
    reused = runner.sample(num_timesteps=2 * 4)
    assert block_of(reused) == block


def test_sampling_leaves_no_objects_frozen_and_keeps_others_frozen():
    import gc

    _, runner = make_runner(experiment(envs=2))
    runner.sample(num_timesteps=2 * 4)
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    marker = [object()]
    gc.freeze()  # someone else's frozen objects stay frozen
    try:
        runner.sample(num_timesteps=2 * 4)
        assert gc.get_freeze_count() > 0
        assert not any(o is marker for o in gc.get_objects())  # still in the frozen set
    finally:
        gc.unfreeze()
    assert any(o is marker for o in gc.get_objects())


def test_value_based_modules_act_greedily_and_their_episodes_fill_the_replay_buffer():
    """QMIX's own epsilon-greedy actions (here epsilon 0: the argmax of its Q-values) are
    what the batched runner plays, and its episodes become joint replay transitions."""
    from rl_platform.algorithms.replay import JointReplayBuffer

    qmix = {"id": "qmix", "shared_policy": True, "hyperparams": {"epsilon": 0.0}}
    exp = experiment("two_step_game", {}, envs=4, algorithm=qmix)
    config, runner = make_runner(exp)
    assert config.env_runner_cls is BatchedEnvRunner
    episodes = runner.sample(num_timesteps=4 * 5)
    module = runner.module["shared"]
    for episode in episodes:
        for sa in episode.agent_episodes.values():
            obs = sa.get_observations(slice(0, len(sa)))
            batch = {Columns.OBS: {k: torch.as_tensor(v) for k, v in obs.items()}}
            greedy = module.forward_inference(batch)[Columns.ACTIONS].numpy()
            np.testing.assert_array_equal(np.asarray(sa.get_actions(slice(0, len(sa)))), greedy)
    buffer = JointReplayBuffer(100, ["agent_0", "agent_1"], state_dim=config.state_dim, seed=0)
    assert buffer.add_episodes(episodes) == 4 * 5
    stored = buffer.sample(20)
    assert stored["actions"].dtype == np.int64 and stored["mask"].all()


@pytest.mark.parametrize("discrete", [False, True])
def test_maddpg_actors_play_their_own_actions_into_the_replay_buffer(discrete):
    """MADDPG's actors choose (noisy or sampled) env actions themselves: the batched runner
    plays them unchanged, inside the box, and its episodes become joint transitions."""
    from rl_platform.algorithms.replay import JointReplayBuffer

    maddpg = {"id": "maddpg", "shared_policy": True}
    env = {"id": "rendezvous", "config": {"num_agents": 3, "episode_length": 5,
                                          "discrete": discrete}}  # fmt: skip
    exp = experiment(envs=4, algorithm=maddpg, env=env, rewards={})
    config, runner = make_runner(exp)
    assert config.env_runner_cls is BatchedEnvRunner
    episodes = runner.sample(num_timesteps=4 * 5)
    space = runner.env.agent_action_space
    for episode in episodes:
        for sa in episode.agent_episodes.values():
            assert all(space.contains(np.asarray(a, dtype=space.dtype)) for a in sa.get_actions())
    agents = ["agent_0", "agent_1", "agent_2"]
    buffer = JointReplayBuffer(100, agents, state_dim=config.state_dim, seed=0)
    assert buffer.add_episodes(episodes) == 4 * 5


def test_set_task_reaches_the_batched_core():
    _, runner = make_runner(experiment(envs=3))
    assert set_task_of(runner.env, "hard") == 1
    assert runner.env.core.get_task() == "hard"


@pytest.mark.parametrize(
    ("sections", "reason"),
    [
        ({"rewards": {"difference": True}}, "difference"),
        ({"safety": {"constraints": [{"name": "max_speed", "limit": 0.5}]}}, "safety"),
        (
            {
                "env": {"id": "rendezvous", "config": {"discrete": True}},
                "algorithm": {"id": "qmix", "hyperparams": {"recurrent": True}},
                "rewards": {},
            },
            "recurrent",
        ),
    ],
)
def test_unsupported_settings_fall_back_to_the_stock_runner(caplog, sections, reason):
    exp = experiment(**sections)
    assert reason in unsupported_reason(exp)
    with caplog.at_level(logging.INFO, logger="rl_platform.builder"):
        config = build_algorithm_config(exp)
    assert config.env_runner_cls is None
    assert "sampler: stock (the batched runner cannot run this" in caplog.text
    assert reason in caplog.text


def test_batched_is_the_default_and_stock_is_selected():
    raw = {"name": "x", "env": {"id": "rendezvous"}, "algorithm": {"id": "mappo"},
           "stop": {"training_iteration": 1}}  # fmt: skip
    assert load_experiment(raw).resources.sampler == "auto"
    assert build_algorithm_config(load_experiment(raw)).env_runner_cls is BatchedEnvRunner
    stock = load_experiment({**raw, "resources": {"sampler": "stock"}})
    assert build_algorithm_config(stock).env_runner_cls is None
    assert build_algorithm_config(experiment()).env_runner_cls is BatchedEnvRunner
