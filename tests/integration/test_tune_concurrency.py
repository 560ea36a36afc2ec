"""Two `rlp tune` at once: same sweep, same output, same second; two resumes of one sweep."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from rl_platform.tuning import storage as study_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
NAME = "tiny_race"
LR_SPACE = {"algorithm.hyperparams.lr": {"loguniform": [1.0e-4, 1.0e-2]}}


def race_sweep(tiny_sweep, iterations: int, **tune_section) -> dict:
    """The tiny sweep with 2 trials (one at a time) over lr only, no early stopping."""
    tune_section = {
        "num_samples": 2,
        "max_concurrent_trials": 1,
        "scheduler": "none",
        **tune_section,
    }
    return tiny_sweep(NAME, iterations, search_space=LR_SPACE, **tune_section)


def start(*args: str) -> subprocess.Popen:
    """`python -m rl_platform ARGS` in the background, output captured as text."""
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.Popen(
        [sys.executable, "-m", "rl_platform", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def finish(procs: list[subprocess.Popen], timeout: float = 420) -> list[str]:
    """Each process's output once all have ended (killed if they overrun)."""
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outputs


def assert_intact(sweep_dir: Path, trials: int = 2) -> None:
    """The study and the tables hold every trial once, each finished."""
    study = study_storage.load_study(sweep_dir)
    assert len(study.trials) == trials
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    tune_ids = {t.user_attrs["tune_trial_id"] for t in study.trials}
    with (sweep_dir / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["trial"] for r in rows} == tune_ids and len(rows) == trials
    assert json.loads((sweep_dir / "summary.json").read_text())["status"] == "finished"


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "shared sqlite"])
def test_two_sweeps_started_at_the_same_moment_on_one_directory_both_finish(
    tmp_path, ray_address, storage, tiny_sweep
):
    # "shared sqlite": both create the schema of one new SQLite file at the same moment
    extra = {"storage": f"sqlite:///{tmp_path / 'studies.db'}"} if storage != "journal" else {}
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        yaml.safe_dump(race_sweep(tiny_sweep, 1, max_concurrent_trials=2, **extra))
    )
    output = tmp_path / "runs"
    args = ["tune", str(sweep_file), "--output", str(output), "--address", ray_address]
    procs = [start(*args), start(*args)]
    outputs = finish(procs)

    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
    sweep_dirs = sorted(p for p in (output / NAME).iterdir() if p.is_dir())
    assert len(sweep_dirs) == 2  # sweep-<stamp> and sweep-<stamp>-2 when in the same second
    studies = set()
    for sweep_dir in sweep_dirs:
        assert_intact(sweep_dir)
        studies.add(study_storage.recorded(sweep_dir)[1])
    assert len(studies) == 2


def wait_for_finished_trial(output: Path, proc: subprocess.Popen, timeout: float = 240) -> Path:
    """The sweep directory, once its study holds a finished trial."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        for record in (output / NAME).glob(f"sweep-*/{study_storage.RECORD_FILE}"):
            try:
                study = study_storage.load_study(record.parent)
                if study.get_trials(deepcopy=False, states=FINISHED):
                    return record.parent
            except study_storage.StudyStorageError:  # the study is not created yet
                pass
        time.sleep(0.5)
    raise AssertionError("no trial finished in time")


@pytest.mark.slow
def test_two_resumes_of_one_sweep_give_one_run_and_one_refusal(tmp_path, ray_address, tiny_sweep):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(race_sweep(tiny_sweep, 3)))
    output = tmp_path / "runs"
    first = start("tune", str(sweep_file), "--output", str(output), "--address", ray_address)
    try:
        sweep_dir = wait_for_finished_trial(output, first)
        # Ctrl-C, not SIGKILL: a kill that lands while Tune copies its experiment state
        # leaves it truncated (test_tune.py covers the kill); this test is about the lock.
        first.send_signal(signal.SIGINT)
    finally:
        (out,) = finish([first])
    finished = study_storage.load_study(sweep_dir).get_trials(deepcopy=False, states=FINISHED)
    assert len(finished) < 2, "the sweep finished before Ctrl-C: the test proves nothing"
    assert first.returncode == 130, out[-3000:]

    args = ["tune", "--resume", str(sweep_dir), "--address", ray_address]
    procs = [start(*args), start(*args)]
    outputs = finish(procs)

    codes = sorted(proc.returncode for proc in procs)
    if codes != [0, 2]:
        tails = "\n---- next process ----\n".join(o[-6000:] for o in outputs)
        pytest.fail(f"exit codes {codes}, expected one 0 and one 2:\n{tails}")
    (winner,) = [p for p in procs if p.returncode == 0]
    refused = outputs[procs.index(next(p for p in procs if p.returncode == 2))]
    assert f"in use by pid {winner.pid}" in " ".join(refused.split()), refused
    assert "Traceback" not in refused
    assert_intact(sweep_dir)
