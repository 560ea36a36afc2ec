"""Curriculum runs: promotion by learning, remote env runners on the new level, restore,
and a restarted env runner coming back at the current level, not the first."""

import csv
import json

import pytest

from rl_platform.checkpoints import load_algorithm
from rl_platform.curriculum import CurriculumCallback
from rl_platform.training import train

PPO_SMALL = {"train_batch_size_per_learner": 1000, "minibatch_size": 250, "num_epochs": 4}


def results(run_dir):
    with open(run_dir / "trial" / "result.json") as handle:
        return [json.loads(line) for line in handle]


def played(result):
    """Episodes the env runners finished this iteration, per level (levels not seen: nan)."""
    counts = result["env_runners"].get("curriculum", {}).get("played", {})
    return {level: n for level, n in counts.items() if n == n and n > 0}


@pytest.mark.slow
def test_short_run_promotes_twice_and_remote_runners_play_the_new_level(tmp_path, ray_address):
    """Coverage with difference rewards: 2 agents learn to split 2 targets in ~10 iterations."""
    experiment = {
        "name": "curriculum",
        "seed": 3,
        "env": {"id": "coverage", "config": {"num_agents": 2, "num_targets": 2}},
        "algorithm": {"id": "ppo", "hyperparams": {**PPO_SMALL, "lr": 0.003}},
        "rewards": {"difference": True},
        "curriculum": {
            "levels": ["easy", "medium", "hard"],
            "promote": {"min_episodes": 20, "window": 20, "threshold": 0.5},
        },
        "resources": {"num_env_runners": 2, "num_cpus_per_env_runner": 0.5},
        "stop": {"training_iteration": 25},
        "checkpoint": {"every": 0},
    }
    result = train(experiment, output=tmp_path / "runs")
    rows = results(result.run_dir)
    levels = [row["curriculum"]["level_name"] for row in rows]
    assert rows[-1]["curriculum"]["promotions"] >= 2, levels
    first = {level: levels.index(level) for level in ("easy", "medium", "hard")}
    assert first["easy"] < first["medium"] < first["hard"], levels
    # Episodes the (remote) env runners played after the move to hard were played at hard.
    after = rows[first["hard"] + 1 :]
    assert after and all(set(played(row)) <= {"hard"} for row in after[1:]), [
        played(r) for r in after
    ]
    assert sum(played(row).get("hard", 0) for row in after) > 0
    # The compact metrics file and the reward parts.
    with open(result.run_dir / "metrics.csv") as handle:
        metrics = list(csv.DictReader(handle))
    assert metrics[-1]["level"] == "hard"
    assert {"reward_env", "reward_coverage", "reward_difference", "reward_total"} <= set(metrics[0])
    assert rows[-1]["env_runners"]["rewards"]["difference"] > 0

    # Restoring the checkpoint continues at hard, on every remote runner's envs.
    algorithm = load_algorithm(result.last_checkpoint)
    try:
        (callback,) = [c for c in algorithm.callbacks if isinstance(c, CurriculumCallback)]
        assert callback.curriculum.level == "hard"
        tasks = algorithm.env_runner_group.foreach_env_runner(
            lambda runner: [e.unwrapped.get_task() for e in runner.env.unwrapped.envs],
            local_env_runner=False,
        )
        assert tasks == [["hard"], ["hard"]]
    finally:
        algorithm.stop()


@pytest.mark.slow
def test_restarted_env_runner_comes_back_at_the_current_level(tmp_path, flaky_env, ray_address):
    """The env defaults to medium; the schedule moves to hard; then the runner crashes."""
    marker = tmp_path / "crashed"
    experiment = {
        "name": "curriculum-restart",
        "env": {"id": flaky_env, "config": {"crash_marker": str(marker), "crash_at_step": 700}},
        "algorithm": {
            "id": "ppo",
            "hyperparams": {
                "train_batch_size_per_learner": 200,
                "minibatch_size": 100,
                "num_epochs": 1,
            },
        },
        "curriculum": {"levels": ["easy", "hard"], "schedule": {"easy": 0, "hard": 1}},
        "resources": {"num_env_runners": 1},
        "stop": {"training_iteration": 10},
        "checkpoint": {"every": 0},
    }
    result = train(experiment, output=tmp_path / "runs")
    assert marker.exists(), "the env never crashed: the test proves nothing"
    assert result.metrics["fault_tolerance"]["num_remote_worker_restarts"] >= 1
    rows = results(result.run_dir)
    assert rows[0]["curriculum"]["level_name"] == "hard"
    seen = [played(row) for row in rows[2:]]
    assert all(set(levels) <= {"hard"} for levels in seen), seen
    assert sum(levels.get("hard", 0) for levels in seen[-3:]) > 0, seen


@pytest.mark.parametrize("algo", ["qmix", "maddpg"])
def test_replay_based_algorithms_follow_the_curriculum_and_log_reward_parts(
    tmp_path, ray_address, algo
):
    """The off-policy training loop runs the same callbacks: schedule, reward parts."""
    discrete = algo == "qmix"
    experiment = {
        "name": f"curriculum-{algo}",
        "env": {"id": "rendezvous", "config": {"discrete": discrete, "episode_length": 10}},
        "algorithm": {
            "id": algo,
            "network": {"hidden_sizes": [16]},
            "hyperparams": {
                "num_steps_sampled_before_learning_starts": 0,
                "train_batch_size_per_learner": 16,
            },
        },
        "rewards": {"difference": True, "shaping": {"potential": "spread"}},
        "curriculum": {"levels": ["easy", "expert"], "schedule": {"easy": 0, "expert": 2}},
        "resources": {"num_env_runners": 0, "rollout_fragment_length": 20},
        "stop": {"training_iteration": 6},
        "checkpoint": {"every": 0},
    }
    result = train(experiment, output=tmp_path / "runs")
    rows = results(result.run_dir)
    assert [row["curriculum"]["level_name"] for row in rows[:3]] == ["easy", "expert", "expert"]
    assert set(played(rows[-1])) == {"expert"}
    assert {"env", "difference", "shaping", "total"} <= set(rows[-1]["env_runners"]["rewards"])
