"""`rlp train` names its run directory before Ray starts; the Python API reports progress."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

TINY = {
    "name": "tiny_progress",
    "seed": 0,
    "env": {"id": "two_step_game"},
    "algorithm": {
        "id": "ppo",
        "hyperparams": {
            "train_batch_size_per_learner": 200,
            "minibatch_size": 100,
            "num_epochs": 1,
        },
        "network": {"hidden_sizes": [16]},
    },
    "resources": {"num_env_runners": 0},
    "stop": {"training_iteration": 2},
    "checkpoint": {"every": 1, "keep": 1},
}


def rlp_in_order(*args: str) -> subprocess.CompletedProcess:
    """``rlp ARGS`` with a private Ray, stdout and stderr in one stream in the order written."""
    return subprocess.run(
        [sys.executable, "-m", "rl_platform", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "80", "PYTHONUNBUFFERED": "1"},
        timeout=300,
    )


def test_rlp_train_names_the_run_directory_before_ray_starts_and_counts_k_of_n(tmp_path):
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(yaml.safe_dump(TINY))
    output = tmp_path / "runs"
    # a private Ray (no --address), stdout and stderr in one stream, in the order written
    proc = rlp_in_order("train", str(experiment), "--output", str(output))
    assert proc.returncode == 0, proc.stdout[-3000:]
    (run_dir,) = (output / "tiny_progress").iterdir()
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("rlp train: training tiny_progress: ppo on two_step_game")
    announced = lines.index(f"run directory: {run_dir}")
    # only our own lines come before it: what starts, and which sampler
    assert all(line.startswith(("rlp train:", "sampler:")) for line in lines[:announced])
    assert lines[announced + 1] == f"  watch it: rlp monitor {run_dir} --follow"
    assert lines[announced + 2].split() == ["tensorboard", "--logdir", str(run_dir)]
    rows = [line.split() for line in lines if line.split()[:1] in (["1/2"], ["2/2"])]
    assert [r[0] for r in rows] == ["1/2", "2/2"]
    assert min(i for i, line in enumerate(lines) if line.split()[:1] == ["iter"]) > announced
    # the summary's paths are whole lines at 80 columns
    assert f"run directory: {run_dir}" in lines[announced + 3 :]
    assert any(line.startswith(f"best checkpoint: {run_dir}/trial/checkpoint_") for line in lines)


def test_the_python_api_writes_progress_to_stderr_unless_told_not_to(tmp_path, capfd):
    import rl_platform
    from rl_platform.ray_session import shutdown_ray

    try:  # train starts a private Ray in this process: stop it for the modules after this
        result = rl_platform.train(TINY, output=tmp_path / "loud")
        err = capfd.readouterr().err
        assert f"rl_platform: training in {result.run_dir}" in err
        assert "iter 1/2  env steps" in err and "iter 2/2  env steps" in err
        assert err.index("rl_platform: training in") < err.index("iter 1/2")
        rl_platform.train(TINY, output=tmp_path / "quiet", progress=False)
        assert "iter 1/2" not in capfd.readouterr().err
    finally:
        shutdown_ray()
    assert Path(result.run_dir, "summary.json").is_file()


def test_rlp_tune_names_the_sweep_directory_before_ray_starts_and_counts_trials(
    tmp_path, tiny_sweep
):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            tiny_sweep(name="tiny_tune_progress", iterations=2, num_samples=2, scheduler="none")
        )
    )
    output = tmp_path / "sweeps"
    proc = rlp_in_order("tune", str(sweep), "--output", str(output))
    assert proc.returncode == 0, proc.stdout[-3000:]
    (sweep_dir,) = (output / "tiny_tune_progress").iterdir()
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("rlp tune: sweeping tiny_tune_progress: ppo on two_step_game")
    assert "2 trials of up to training_iteration 2" in lines[0]
    announced = lines.index(f"sweep directory: {sweep_dir}")
    # only our own lines come before it: what starts, and which sampler
    assert all(line.startswith(("rlp tune:", "sampler:")) for line in lines[:announced])
    assert lines[announced + 1].split() == [
        "watch",
        "it:",
        "tensorboard",
        "--logdir",
        str(sweep_dir),
    ]
    first_row = min(i for i, line in enumerate(lines) if line.startswith("trial "))
    assert first_row > announced + 2
    rows = [line for line in lines if line.startswith("trial ") and " iter " in line]
    assert len(rows) == 4 and all("/2 " in row.split(" iter ")[1][:6] for row in rows)
    ended = [line for line in lines if line.startswith("trial ") and " after 2 iterations" in line]
    assert sorted(line.split("trials ")[1].split()[0] for line in ended) == ["1/2", "2/2"]
    assert ended[-1].rstrip().endswith("left 0s")
