"""`rlp tune` end to end on a local Ray: Optuna + ASHA, failures, kill and resume."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from crashing_env import CrashingTwoStepEnv
from optuna.trial import TrialState

from rl_platform import registry
from rl_platform.config import load_experiment
from rl_platform.training import train
from rl_platform.tuning import storage as study_storage
from rl_platform.tuning import tune

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def load_study(sweep_dir: Path) -> optuna.Study:
    """The sweep's study, from the storage it recorded (a journal file by default)."""
    return study_storage.load_study(sweep_dir)


def read_trials_csv(sweep_dir: Path) -> list[dict]:
    with (sweep_dir / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_sweep_with_optuna_and_asha_finishes_and_its_best_yaml_trains(
    tmp_path, ray_address, tiny_sweep
):
    result = tune(tiny_sweep(), output=tmp_path / "runs", address=ray_address)

    assert result.status == "finished"
    assert len(result.trials) == 4
    assert {r.status for r in result.trials} <= {"complete", "stopped early"}
    assert any(r.status == "complete" and r.iterations == 2 for r in result.trials)
    sweep_dir = result.sweep_dir
    assert sweep_dir.parent == tmp_path / "runs" / "tiny_sweep"

    study = load_study(sweep_dir)
    assert len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete and study.best_value == pytest.approx(result.best.value)
    # every Optuna trial knows its Tune trial and its budget
    assert {t.user_attrs["tune_trial_id"] for t in study.trials} == {
        r.trial_id for r in result.trials
    }
    assert sum(t.user_attrs["env_steps"] for t in study.trials) == result.env_steps

    rows = read_trials_csv(sweep_dir)
    assert len(rows) == 4 and {"algorithm.hyperparams.lr", "exploration", "network"} <= set(rows[0])
    for name in ("optimization_history.png", "learning_curves.png"):
        assert (sweep_dir / "plots" / name).stat().st_size > 0

    best = load_experiment(result.best_yaml)
    assert best.tune is None
    assert best.algorithm.hyperparams["lr"] == pytest.approx(
        result.best.params["algorithm.hyperparams.lr"]
    )
    assert best.algorithm.hyperparams["entropy_coeff"] == pytest.approx(
        result.best.params["exploration"]
    )
    assert list(best.algorithm.network.hidden_sizes) == result.best.params["network"]
    trained = train(result.best_yaml, output=tmp_path / "best_runs")
    assert trained.status == "finished" and trained.iterations == 2


@pytest.fixture
def crashing_env():
    registry.register_env(registry.EnvEntry("crashing_two_step", "test only", CrashingTwoStepEnv))
    yield "crashing_two_step"
    registry.ENVS.pop("crashing_two_step")


@pytest.mark.slow
def test_failed_trials_are_retried_and_reported_to_optuna_as_failed(
    tmp_path, ray_address, crashing_env, tiny_sweep
):
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    sweep = tiny_sweep(num_samples=3, max_concurrent_trials=1, scheduler="none")
    sweep["env"] = {"id": crashing_env, "config": {"crash_dir": str(crash_dir), "crashes": 3}}
    sweep["stop"] = {"training_iteration": 1}
    sweep["resources"]["max_failures"] = 1
    # one at a time: the first trial crashes twice (its try and its one retry) and fails,
    # the second crashes once and succeeds on its retry, the third never crashes
    result = tune(sweep, output=tmp_path / "runs", address=ray_address)

    assert len(list(crash_dir.glob("crash-*"))) == 3
    assert result.status == "finished"
    statuses = [(r.status, r.failures) for r in sorted(result.trials, key=lambda r: r.number)]
    assert statuses == [("error", 2), ("complete", 1), ("complete", 0)]
    study = load_study(result.sweep_dir)
    assert [t.state for t in study.trials] == [
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert result.best is not None and result.best.status == "complete"


def rlp(*args: str) -> list[str]:
    return [sys.executable, "-m", "rl_platform", *args]


def wait_for_finished_trial(output: Path, proc: subprocess.Popen, timeout: float = 240) -> Path:
    """The sweep directory, once its study holds a finished trial."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        found = list((output / "tiny_sweep").glob(f"sweep-*/{study_storage.RECORD_FILE}"))
        if found:
            sweep_dir = found[0].parent
            try:
                trials = load_study(sweep_dir).get_trials(deepcopy=False, states=FINISHED)
            except Exception:  # noqa: BLE001 (the driver is still creating the study)
                trials = []
            if trials:
                return sweep_dir
        time.sleep(0.5)
    raise AssertionError("no trial finished in time")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_killed_sweep_resumes_without_rerunning_finished_trials(
    tmp_path, ray_address, sig, tiny_sweep
):
    sweep_file = tmp_path / "sweep.yaml"
    # One trial at a time, each long enough that the kill lands while trials remain
    # (with 2 at once and 3 iterations, all 4 could finish before the kill on a fast machine).
    sweep = tiny_sweep(max_concurrent_trials=1)
    sweep["stop"] = {"training_iteration": 6}
    sweep_file.write_text(yaml.safe_dump(sweep))
    output = tmp_path / "runs"
    env = {**os.environ, "COLUMNS": "200"}
    args = ["tune", str(sweep_file), "--output", str(output), "--address", ray_address]
    proc = subprocess.Popen(
        rlp(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        sweep_dir = wait_for_finished_trial(output, proc)
        time.sleep(3)  # longer than Tune's experiment-state period (1 s)
        study = load_study(sweep_dir)
        finished = {
            t.number: (t.state, t.user_attrs["tune_trial_id"])
            for t in study.get_trials(deepcopy=False, states=FINISHED)
        }
        progress = {
            tune_id: (sweep_dir / f"trial_{tune_id}" / "progress.csv").read_text()
            for _, tune_id in finished.values()
        }
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, out[-3000:]
        assert "rlp tune --resume" in out
    assert len(finished) < 4, "every trial finished before the kill: the test proves nothing"

    resumed = subprocess.run(
        rlp("tune", "--resume", str(sweep_dir), "--address", ray_address),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "finished" in resumed.stdout and "best.yaml" in resumed.stdout
    assert resumed.stdout.count("sampler: batched (1 env copy per runner)") == 1  # not per trial

    study = load_study(sweep_dir)
    assert len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert len({t.user_attrs["tune_trial_id"] for t in study.trials}) == 4
    for number, (state, tune_id) in finished.items():
        assert study.trials[number].state == state  # told once, never again
        # not run again: its results were not appended to
        assert (sweep_dir / f"trial_{tune_id}" / "progress.csv").read_text() == progress[tune_id]
    rows = read_trials_csv(sweep_dir)
    assert len(rows) == 4 and {r["status"] for r in rows} <= {"complete", "stopped early"}
    assert (sweep_dir / "best.yaml").is_file()
