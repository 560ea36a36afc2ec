"""Action masks through Ray: no masked action sampled, chosen greedily or served (masked_choice)."""

import subprocess
import sys

import numpy as np
import pytest

from rl_platform.builder import build_algorithm_config
from rl_platform.config import load_experiment
from rl_platform.sampling import BatchedEnvRunner

pytestmark = pytest.mark.slow


def experiment(algorithm, sampler, mask_in="info", iterations=1):
    return {
        "name": f"masks_{algorithm}",
        "seed": 0,
        "env": {"id": "masked_choice", "config": {"mask_in": mask_in}},
        "algorithm": {
            "id": algorithm,
            "hyperparams": {
                "train_batch_size_per_learner": 1000,
                "minibatch_size": 500,
                "num_epochs": 2,
            },
        },
        "resources": {"num_env_runners": 0, "num_envs_per_env_runner": 4, "sampler": sampler},
        "stop": {"training_iteration": iterations},
        "checkpoint": {"every": 0},
    }


def trained_algo(algorithm, sampler, mask_in="info"):
    """An RLlib algorithm (local env runner) after one training iteration on the masks."""
    config = build_algorithm_config(load_experiment(experiment(algorithm, sampler, mask_in)))
    assert (config.env_runner_cls is BatchedEnvRunner) == (sampler == "batched")
    algo = config.build_algo()
    result = algo.train()
    assert np.isfinite(result["env_runners"]["episode_return_mean"])
    return algo


def masked_and_illegal(episodes):
    """(actions checked, masked by the observed mask, illegal by the env's infos, infos seen)."""
    total = masked = illegal = judged = 0
    for episode in episodes:
        for sa in episode.agent_episodes.values():
            steps = len(sa)
            masks = sa.get_observations(slice(0, steps))["action_mask"]
            actions = np.asarray(sa.get_actions(slice(0, steps)))
            total += steps
            masked += int((masks[np.arange(steps), actions] == 0).sum())
            for info in sa.get_infos(slice(1, steps + 1)):  # the infos after each step
                if "illegal" in info:
                    judged += 1
                    illegal += info["illegal"]
    return total, masked, illegal, judged


@pytest.mark.parametrize("algorithm", ["mappo", "ippo", "ppo"])
def test_the_stock_sampler_takes_no_masked_action_in_10000_steps(ray_address, algorithm):
    algo = trained_algo(algorithm, "stock")
    try:
        # 5,000 env steps of 2 agents: 10,000 agent steps, then 1,000 greedy ones
        total, masked, illegal, judged = masked_and_illegal(
            algo.env_runner.sample(num_timesteps=5_000, explore=True)
        )
        assert total >= 10_000 and judged >= 9_000
        assert masked == 0 and illegal == 0
        total, masked, illegal, _ = masked_and_illegal(
            algo.env_runner.sample(num_timesteps=1_000, explore=False)
        )
        assert total >= 2_000 and masked == 0 and illegal == 0
    finally:
        algo.stop()


@pytest.mark.parametrize("algorithm", ["mappo", "ippo", "ppo"])
def test_the_batched_sampler_takes_no_masked_action_in_10000_steps(ray_address, algorithm):
    algo = trained_algo(algorithm, "batched", mask_in="obs")
    try:
        runner = algo.env_runner
        illegal = []  # the env's own verdict, from the core's copies
        core = runner.env.core
        for b, step in enumerate(core._steps):

            def counted(actions, step=step):
                out = step(actions)
                illegal.extend(info["illegal"] for info in out[-1].values())
                return out

            core._steps[b] = counted
        total, masked, _, _ = masked_and_illegal(runner.sample(num_timesteps=5_000))
        assert total >= 10_000 and len(illegal) >= 10_000
        assert masked == 0 and sum(illegal) == 0
    finally:
        algo.stop()


def test_train_evaluate_and_serve_a_masked_choice_policy(tmp_path, ray_address):
    """`rlp train` runs on the batched runner; greedy and served actions are never masked."""
    from rl_platform.evaluation.policy import TrainedPolicy
    from rl_platform.evaluation.rollout import play, seeded_job
    from rl_platform.serving.arms import ServerConfig, resolve_arm
    from rl_platform.serving.schemas import ActRequest
    from rl_platform.serving.service import CHAMPION, PolicyService
    from rl_platform.training import train

    config = experiment("mappo", "auto", iterations=4)
    config["checkpoint"] = {"every": 4}
    result = train(config, output=tmp_path)
    assert result.status == "finished"
    checkpoint = result.best_checkpoint

    policy = TrainedPolicy(checkpoint)
    core = masked_core(40)
    played = play(core, policy.actions, seeded_job("policy", "clean", "default", 40, 0))
    assert sum(core.illegal) == 0 and len(core.illegal) == 40 * 25 * 2
    assert played.returns.mean() > 0.2 * 25  # more than the worst legal action's pay

    evaluate = subprocess.run(
        [sys.executable, "-m", "rl_platform", "evaluate", str(result.run_dir)]
        + ["--episodes", "10", "--workers", "0", "--no-baselines"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]

    service = PolicyService(ServerConfig(champion=resolve_arm(checkpoint), batching=False))
    rng = np.random.default_rng(0)
    items, given = [], []
    for _ in range(300):
        masks = (rng.random((2, 5)) < 0.4).astype(int)
        masks[np.arange(2), rng.integers(5, size=2)] = 1
        obs = rng.random((2, 6)).round(3).tolist()
        request = ActRequest.model_validate(
            {
                "observations": {"player_0": obs[0], "player_1": obs[1]},
                "action_masks": {"player_0": masks[0].tolist(), "player_1": masks[1].tolist()},
            }
        )
        row, present = service.parse(request)
        parsed = service.parse_masks(request)
        items.append((CHAMPION, row, present, parsed))
        given.append(parsed)
    for decision, masks in zip(service.act(items), given):
        assert masks[np.arange(2), decision.actions].all()


def masked_core(copies):
    """masked_choice's batched core; ``core.illegal`` collects the env's illegal flags."""
    from rl_platform.envs.pettingzoo import ParallelEnvCore, PettingZooConfig

    source = "pettingzoo:rl_platform.envs.masked_choice:parallel_env"
    core = ParallelEnvCore(PettingZooConfig(source=source, mask_in="info"), copies)
    core.illegal = []
    for b, step in enumerate(core._steps):

        def counted(actions, step=step):
            out = step(actions)
            core.illegal.extend(info["illegal"] for info in out[-1].values())
            return out

        core._steps[b] = counted
    return core
