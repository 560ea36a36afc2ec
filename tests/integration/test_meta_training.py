"""Meta-training (Reptile) on remote env runners, its restore, and adaptation runs that start
from the meta-weights (or from scratch)."""

import json

import numpy as np
import pytest
import yaml

from rl_platform.adaptation import AdaptError, adapt, adaptation_experiment
from rl_platform.advanced.meta import TaskSampler, core_of
from rl_platform.advanced.meta_training import MetaLearningCallback
from rl_platform.builder import build_algorithm_config
from rl_platform.checkpoints import load_algorithm, load_policy
from rl_platform.config import load_experiment
from rl_platform.envs.meeting_point import MEETING_POINTS
from rl_platform.training import train

TASKS, HELD_OUT, SEED = ["e", "w", "s"], ["n"], 5
EXPERIMENT = {
    "name": "meta_it",
    "seed": SEED,
    "env": {"id": "meeting_point", "config": {"num_agents": 2, "episode_length": 10}},
    "algorithm": {
        "id": "ppo",
        "hyperparams": {
            "train_batch_size_per_learner": 400,
            "minibatch_size": 100,
            "num_epochs": 2,
        },
        "network": {"hidden_sizes": [16]},
    },
    "meta": {"tasks": TASKS, "held_out": HELD_OUT, "inner_iterations": 2, "meta_lr": 0.5},
    "resources": {"num_env_runners": 1, "num_cpus_per_env_runner": 0.5},
    "stop": {"training_iteration": 6},
    "checkpoint": {"every": 2, "keep": None},
}


def runner_meeting_points(algorithm):
    """The meeting point of every env of every remote env runner (stock or batched)."""
    return algorithm.env_runner_group.foreach_env_runner(
        lambda runner: [
            tuple(core_of(e.unwrapped).config.meeting_point)
            for e in runner.env.unwrapped.envs or [runner.env]  # the batched runner: one core
        ],
        local_env_runner=False,
    )


def module_weights(algorithm):
    return algorithm.learner_group.get_weights()["shared"]


@pytest.fixture(scope="module")
def meta_run(tmp_path_factory, ray_address):
    return train(EXPERIMENT, output=tmp_path_factory.mktemp("runs"))


@pytest.mark.slow
def test_meta_training_switches_tasks_by_the_seeded_sampler(meta_run):
    assert meta_run.status == "finished" and meta_run.iterations == 6
    with open(meta_run.run_dir / "trial" / "result.json") as handle:
        rows = [json.loads(line)["meta"] for line in handle]
    sampler = TaskSampler(TASKS, SEED)
    expected = [sampler.next() for _ in range(3)]
    assert [row["task"] for row in rows] == [t for t in expected for _ in range(2)]
    assert [row["inner_iteration"] for row in rows] == [1, 2] * 3
    assert [row["meta_step"] for row in rows] == [0, 0, 1, 1, 2, 2]
    assert not set(HELD_OUT) & {row["task"] for row in rows}
    last = rows[-1]
    assert last["finished_task"] == expected[-1]
    assert np.isfinite(last["return_before"]) and np.isfinite(last["return_after"])
    assert set(last["tasks"]) == set(expected)

    # The restored algorithm continues: next task drawn, every remote env on it.
    algorithm = load_algorithm(meta_run.last_checkpoint)
    try:
        (callback,) = [c for c in algorithm.callbacks if isinstance(c, MetaLearningCallback)]
        assert callback.meta_step == 3 and callback.task == sampler.next()
        assert runner_meeting_points(algorithm) == [[MEETING_POINTS[callback.task]]]
        # The checkpoint's learner holds the meta-weights, which its export holds too.
        exported = load_policy(meta_run.last_checkpoint, "shared").state_dict()
        for name, value in module_weights(algorithm).items():
            np.testing.assert_allclose(value, exported[name].numpy(), rtol=1e-6)
    finally:
        algorithm.stop()


@pytest.mark.slow
def test_adaptation_starts_from_the_meta_weights_on_the_held_out_task(meta_run, tmp_path):
    raw = adaptation_experiment(meta_run.run_dir, "n", 1)
    experiment = load_experiment(raw)
    assert experiment.meta is None and experiment.stop.training_iteration == 1
    assert tuple(experiment.env.config["meeting_point"]) == MEETING_POINTS["n"]
    # Built, before any training: learner and env runner hold the meta-weights.
    algorithm = build_algorithm_config(experiment).build_algo()
    try:
        exported = load_policy(meta_run.last_checkpoint, "shared").state_dict()
        learner = module_weights(algorithm)
        runner = algorithm.env_runner_group.foreach_env_runner(
            lambda r: r.module["shared"].get_state(), local_env_runner=False
        )[0]
        for name, value in exported.items():
            np.testing.assert_allclose(learner[name], value.numpy(), rtol=1e-6)
            if name in runner:
                np.testing.assert_allclose(runner[name], value.numpy(), rtol=1e-6)
        assert runner_meeting_points(algorithm) == [[MEETING_POINTS["n"]]]
    finally:
        algorithm.stop()

    adapted = adapt(meta_run.run_dir, "n", 1, output=tmp_path)
    scratch = adapt(meta_run.run_dir, "n", 1, output=tmp_path, scratch=True)
    for result, start in ((adapted, "adapted"), (scratch, "scratch")):
        assert result.status == "finished" and result.iterations == 1
        config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
        assert config["name"] == f"meta_it-{start}-n" and config["meta"] is None
        assert (config["initial_policies"] is None) == (start == "scratch")
        assert (result.last_checkpoint / "policies" / "shared.pt").is_file()

    with pytest.raises(AdaptError, match="no such task variant"):
        adaptation_experiment(meta_run.run_dir, "hard")
    with pytest.raises(AdaptError, match="not a meta-training run"):
        adaptation_experiment(adapted.run_dir, "n")
    with pytest.raises(AdaptError, match="no such run"):
        adaptation_experiment(tmp_path / "missing", "n")


@pytest.mark.slow
def test_fomaml_meta_trains_with_level_tasks_and_the_stock_local_runner(tmp_path, ray_address):
    """Tasks as task levels (set_task), first-order MAML, sampling in the driver's runner."""
    experiment = {
        **EXPERIMENT,
        "meta": {"method": "fomaml", "tasks": ["easy", "hard"], "held_out": ["expert"]},
        "resources": {"num_env_runners": 0, "sampler": "stock"},
        "stop": {"training_iteration": 4},
        "checkpoint": {"every": 0},
    }
    result = train(experiment, output=tmp_path)
    assert result.status == "finished"
    meta = result.metrics["meta"]
    assert meta["meta_step"] == 1 and meta["finished_task"] in ("easy", "hard")
    algorithm = load_algorithm(result.last_checkpoint)
    try:
        (callback,) = [c for c in algorithm.callbacks if isinstance(c, MetaLearningCallback)]
        assert algorithm.env_runner.env.unwrapped.envs[0].unwrapped.get_task() == callback.task
    finally:
        algorithm.stop()
