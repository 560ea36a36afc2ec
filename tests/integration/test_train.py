"""`rlp train` end to end on a local Ray: run directory, checkpoints, resume, learning."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rl_platform.training import train

TINY = [
    "algorithm.hyperparams.train_batch_size_per_learner=400",
    "algorithm.hyperparams.minibatch_size=100",
    "algorithm.hyperparams.num_epochs=2",
    "resources.num_envs_per_env_runner=2",
]


def rlp_args(*args):
    return [sys.executable, "-m", "rl_platform", *args]


def overrides(items):
    return [arg for item in items for arg in ("--set", item)]


def rlp(*args, timeout=300):
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(rlp_args(*args), capture_output=True, text=True, env=env, timeout=timeout)


def read_metrics(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def only_run_dir(output: Path) -> Path:
    (run_dir,) = [p for p in (output / "quickstart").iterdir() if p.is_dir()]
    return run_dir


def test_cli_train_writes_a_run_directory_with_a_checkpoint_that_restores(
    tmp_path, quickstart_path, ray_address
):
    output = tmp_path / "runs"
    items = [*TINY, "stop.training_iteration=2", "checkpoint.every=1"]
    proc = rlp(
        "train",
        str(quickstart_path),
        *overrides(items),
        "--output",
        str(output),
        "--address",
        ray_address,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(output)
    assert "return mean" in proc.stdout and "best checkpoint" in proc.stdout
    assert run_dir.name in proc.stdout
    assert proc.stdout.count("sampler: batched (2 env copies per runner)") == 1

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["iterations"] == 2
    assert summary["env_steps"] == 800 and summary["env_steps_per_s"] > 0
    assert [int(r["iteration"]) for r in read_metrics(run_dir)] == [1, 2]
    assert "training_iteration: 2" in (run_dir / "config.yaml").read_text()
    trial = run_dir / "trial"
    assert (trial / "progress.csv").is_file() and (trial / "result.json").is_file()
    assert list(trial.glob("events.out.tfevents.*")), "no TensorBoard event file"

    from ray.rllib.algorithms.algorithm import Algorithm

    best = Path(summary["best_checkpoint"])
    assert best.is_dir() and best.parent == trial
    algo = Algorithm.from_checkpoint(str(best))
    try:
        assert algo.iteration in (1, 2)
        import torch

        from rl_platform.checkpoints import load_policy

        module = algo.get_module("shared")
        size = module.observation_space["obs"].shape[0]  # MAPPO: Dict(obs=local, state=...)
        obs = {"obs": torch.linspace(-1, 1, 4 * size).reshape(4, -1)}
        with torch.no_grad():
            expected = module.forward_inference({"obs": obs})["action_dist_inputs"]
            # the weights-only export beside the checkpoint is the same policy
            exported = load_policy(best, "shared").forward_inference({"obs": obs})
        assert expected.shape[0] == 4
        torch.testing.assert_close(exported["action_dist_inputs"], expected)
    finally:
        algo.stop()


def test_interrupted_run_resumes_and_continues_the_iteration_count(
    tmp_path, quickstart_path, ray_address
):
    output = tmp_path / "runs"
    items = [*TINY, "stop.training_iteration=12", "checkpoint.every=1", "checkpoint.keep=null"]
    env = {**os.environ, "COLUMNS": "250"}
    proc = subprocess.Popen(
        rlp_args(
            "train",
            str(quickstart_path),
            *overrides(items),
            "--output",
            str(output),
            "--address",
            ray_address,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        runs = list((output / "quickstart").glob("*/metrics.csv"))
        if runs and len(read_metrics(runs[0].parent)) >= 3:
            break
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    run_dir = only_run_dir(output)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    stopped_at = summary["iterations"]
    assert 3 <= stopped_at < 12

    resumed = rlp("train", "--resume", str(run_dir), "--address", ray_address)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["iterations"] == 12
    # the count goes on from the last checkpoint; the rows after it were dropped before
    # training went on, so every table holds each iteration once
    assert [int(r["iteration"]) for r in read_metrics(run_dir)] == list(range(1, 13))
    results = (run_dir / "trial" / "result.json").read_text().splitlines()
    assert [json.loads(line)["training_iteration"] for line in results] == list(range(1, 13))

    again = rlp("train", "--resume", str(run_dir), "--address", ray_address)
    assert again.returncode == 2 and "already finished" in again.stderr


@pytest.mark.slow
def test_quickstart_learns(tmp_path, quickstart_path, ray_address):
    rows = []
    result = train(
        quickstart_path, ["stop.training_iteration=20"], output=tmp_path, progress=rows.append
    )
    assert result.status == "finished"
    first = np.mean([r.episode_return_mean for r in rows[:3]])
    last = np.mean([r.episode_return_mean for r in rows[-3:]])
    # returns are summed over 5 traders; exploring traders lose about 7 per episode, and
    # 20 iterations of MAPPO reliably reach a profit (about +3..+5 summed by iteration 20)
    assert last > first + 5, (first, last)
    assert last > 0, last
