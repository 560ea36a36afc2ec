"""Data-parallel learners (`resources.num_learners: 2`, torch DDP over gloo) on a local Ray.

Each test asserts from what the run did, not from its config: every learner counts its
update in ``learners/__all_modules__/num_learners_updated`` (summed over learners).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl_platform.algorithms.data_parallel import NUM_LEARNERS_UPDATED
from rl_platform.training import train

TWO_LEARNERS = {"num_env_runners": 1, "num_learners": 2, "num_cpus_per_learner": 0.5}
TINY = {"train_batch_size_per_learner": 200, "minibatch_size": 100, "num_epochs": 2}
TINY_SET = [
    *(f"algorithm.hyperparams.{k}={v}" for k, v in TINY.items()),
    *(f"resources.{k}={v}" for k, v in TWO_LEARNERS.items()),
    "resources.num_envs_per_env_runner=2",
]


def learners_updated(run_dir: Path) -> list[int]:
    """Per iteration of a run: how many learners trained on its batch."""
    lines = (run_dir / "trial" / "result.json").read_text().splitlines()
    return [json.loads(line)["learners"]["__all_modules__"][NUM_LEARNERS_UPDATED] for line in lines]


def rlp_args(*args):
    return [sys.executable, "-m", "rl_platform", *args]


def tiny_rendezvous(algo: str) -> dict:
    return {
        "name": f"{algo}_two_learners",
        "env": {"id": "rendezvous", "config": {}},
        "algorithm": {"id": algo, "hyperparams": dict(TINY)},
        "resources": dict(TWO_LEARNERS),
        "stop": {"training_iteration": 1},
        "checkpoint": {"every": 0},
    }


@pytest.mark.slow
def test_mappo_with_two_learners_trains_checkpoints_and_resumes(
    tmp_path, quickstart_path, ray_address
):
    output = tmp_path / "runs"
    items = [*TINY_SET, "stop.training_iteration=12", "checkpoint.every=1"]
    sets = [arg for item in items for arg in ("--set", item)]
    command = rlp_args(
        "train", str(quickstart_path), *sets, "--output", str(output), "--address", ray_address
    )
    env = {**os.environ, "COLUMNS": "250"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 240
    run_dir = None
    while time.monotonic() < deadline:
        found = list((output / "quickstart").glob("*/trial/result.json"))
        if found and len(found[0].read_text().splitlines()) >= 2:
            run_dir = found[0].parent.parent
            break
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be stopped: {proc.stderr.read()[-3000:]}")
        time.sleep(0.2)
    assert run_dir is not None, "no 2 iterations in 240 s"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    stopped_at = summary["iterations"]
    assert summary["status"] == "interrupted" and 2 <= stopped_at < 12
    assert list((run_dir / "trial").glob("checkpoint_*")), "no checkpoint before the stop"

    resumed = subprocess.run(
        rlp_args("train", "--resume", str(run_dir), "--address", ray_address),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["iterations"] == 12
    # 2 learners trained on every iteration, before the stop and after the resume; each
    # iteration sampled 2 x 200 env steps (train_batch_size_per_learner is per learner)
    assert learners_updated(run_dir) == [2] * 12
    assert summary["env_steps"] == 12 * 2 * TINY["train_batch_size_per_learner"]


@pytest.mark.slow
def test_two_learners_keep_equal_weights(quickstart_path, ray_address):
    # DDP averages the learners' gradients: after an update on different shards of the
    # batch, both learners hold the same weights (and value-norm statistics).
    import numpy as np

    from rl_platform.builder import build_algorithm_config
    from rl_platform.config import load_experiment

    items = [*TINY_SET, "stop.training_iteration=1"]
    config = build_algorithm_config(load_experiment(quickstart_path, items))
    algo = config.build_algo()
    try:
        algo.train()
        assert len(algo.learner_group) == 2
        states = algo.learner_group.foreach_learner(
            lambda learner: learner.module["shared"].unwrapped().state_dict()
        )
        states = [s.get() if hasattr(s, "get") else s for s in states]
        assert len(states) == 2
        first, second = ({k: v.numpy() for k, v in s.items()} for s in states)
        assert first.keys() == second.keys() and "value_norm.running_mean" in first
        for key in first:
            np.testing.assert_allclose(first[key], second[key], rtol=1e-5, atol=1e-6)
        assert float(first["value_norm.debiasing_term"]) > 0
    finally:
        algo.stop()


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "ippo"])
def test_ppo_and_ippo_train_with_two_learners(tmp_path, ray_address, algo):
    result = train(tiny_rendezvous(algo), output=tmp_path, progress=False)
    assert result.status == "finished" and result.iterations == 1
    assert learners_updated(result.run_dir) == [2]


@pytest.mark.slow
def test_curiosity_trains_with_two_learners(tmp_path, ray_address):
    experiment = Path(__file__).parents[2] / "experiments" / "landmark_curiosity.yaml"
    items = [*TINY_SET, "stop.training_iteration=1", "checkpoint.every=0"]
    result = train(experiment, items, output=tmp_path, progress=False)
    assert result.status == "finished" and result.iterations == 1
    assert learners_updated(result.run_dir) == [2]
    last = json.loads((result.run_dir / "trial" / "result.json").read_text().splitlines()[-1])
    # both learners' ICMs trained (their losses reach the result) and shaped the reward
    assert last["curiosity"]["forward_loss"] > 0 and last["curiosity"]["intrinsic_reward"] > 0
