"""A VMAS env through the batched runner against a step-by-step reference (no Ray)."""

import numpy as np
import pytest

pytest.importorskip("vmas")

from lockstep import check_step

from rl_platform.builder import build_algorithm_config  # noqa: E402
from rl_platform.config import load_experiment  # noqa: E402
from rl_platform.envs.vmas import VmasConfig, VmasCore  # noqa: E402
from rl_platform.sampling import BatchedEnvRunner, GlobalStateEnv, unsupported_reason  # noqa: E402


def make_runner(config, envs, seed=7):
    exp = load_experiment(
        {
            "name": "vmas_sampler",
            "seed": 0,
            "env": {"id": "vmas:balance", "config": config},
            "algorithm": {"id": "mappo", "shared_policy": True},
            "resources": {
                "num_env_runners": 0,
                "num_envs_per_env_runner": envs,
                "sampler": "batched",
            },
            "stop": {"training_iteration": 1},
        }
    )
    assert unsupported_reason(exp) is None
    algo_config = build_algorithm_config(exp)
    runner = BatchedEnvRunner(config=algo_config)
    runner._sampler.rng = np.random.default_rng(seed)
    return algo_config, runner


def test_one_copy_plays_the_stock_views_episodes():
    """Observations, global states, rewards, boundaries (time limits and falls) and
    log-probs of the batched runner at B=1 equal the RLlib view's, stepped by hand."""
    algo_config, runner = make_runner({"max_steps": 40, "package_mass": 50}, envs=1)
    episodes = runner.sample(num_timesteps=200)
    env = GlobalStateEnv(dict(algo_config.env_config))
    module = runner.module["shared"]
    obs, _ = env.reset(seed=7)
    ends = []
    for episode in episodes:
        for t in range(len(episode)):
            obs, rewards, terms, truncs, _ = check_step(episode, t, obs, env, module)
            ended = terms["__all__"] or truncs["__all__"]
            if ended:
                ends.append("fell" if terms["__all__"] else "time")
        if episode.is_done:
            # RLlib marks an episode terminated also at a time limit (as the stock runner).
            assert episode.is_truncated == (ends[-1] == "time")
            obs, _ = env.reset()
    assert {"fell", "time"} <= set(ends)


def test_copies_play_the_episodes_of_a_core_stepped_by_hand():
    """B=4: each copy's observations, rewards and boundaries, through per-copy resets after
    falls, are those of a core of 4 copies stepped with the sampled actions and the same
    generator."""
    config = {"max_steps": 40, "package_mass": 50}
    _, runner = make_runner(config, envs=4, seed=11)
    steps = 50
    episodes = runner.sample(num_timesteps=4 * steps)
    reference = VmasCore(VmasConfig(scenario="balance", **config), 4)
    rng = np.random.default_rng(11)
    reference.reset(rng)
    agents = list(episodes[0].agent_episodes)
    unclaimed = list(episodes)

    def claim(b):
        """The episode whose first observations are copy b's now (each is claimed once)."""
        obs = reference.observe()[b]
        for episode in unclaimed:  # (the agents' one-hot ids follow their observations)
            first = [
                episode.agent_episodes[a].get_observations(0)["obs"][: obs.shape[-1]]
                for a in agents
            ]
            if np.allclose(first, obs, rtol=1e-6):
                unclaimed.remove(episode)
                return episode
        raise AssertionError(f"no sampled episode starts where copy {b} does")

    current, position = [claim(b) for b in range(4)], [0] * 4
    falls_alone = 0
    for _ in range(steps):
        actions = np.stack(
            [
                [current[b].agent_episodes[a].get_actions(position[b]) for a in agents]
                for b in range(4)
            ]
        )  # fmt: skip
        result = reference.step(actions, rng)
        done = result.terminated | result.truncated
        observed = reference.observe()
        for b in range(4):
            sampled = current[b].agent_episodes
            got = [sampled[a].get_rewards(position[b]) for a in agents]
            np.testing.assert_allclose(got, result.rewards[b], rtol=1e-5, atol=1e-6)
            position[b] += 1
            assert bool(done[b]) == (current[b].is_done and position[b] == len(current[b]))
            seen = [sampled[a].get_observations(position[b])["obs"][: observed.shape[-1]]
                    for a in agents]  # fmt: skip
            np.testing.assert_allclose(seen, observed[b], rtol=1e-6)  # final ones included
        if done.any():
            falls_alone += int((result.terminated & ~done.all()).sum())
            reference.reset(rng, done)
            for b in np.flatnonzero(done).tolist():
                current[b], position[b] = claim(b), 0
    assert falls_alone > 0  # copies fell on their own: per-copy resets were exercised
