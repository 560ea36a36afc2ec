"""Resume safety without Ray: damaged Tune pickles are refused, tables trimmed to a checkpoint."""

import csv
import json
import pickle
from pathlib import Path

import pytest

from rl_platform.resume import (
    RUN_SEARCH_STATE,
    ResumeError,
    TrialState,
    check_tune_state,
    resumed,
    trim_tables,
)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def column(path: Path, name: str) -> list[float]:
    with path.open(newline="") as handle:
        return [float(row[name]) for row in csv.DictReader(handle)]


def jsonl(path: Path, key: str) -> list[float]:
    return [json.loads(line)[key] for line in path.read_text().splitlines()]


@pytest.fixture
def run(tmp_path) -> tuple[Path, TrialState]:
    """A run directory whose tables reach iteration 5 while its checkpoint is at 3."""
    run_dir = tmp_path / "run"
    trial_dir = run_dir / "trial"
    trial_dir.mkdir(parents=True)
    write_csv(
        run_dir / "metrics.csv", ["iteration", "env_steps"], [[i, 100 * i] for i in (1, 2, 3, 4, 5)]
    )
    write_csv(run_dir / "monitor.csv", ["iteration", "x"], [[f"{i}.0", i] for i in (1, 2, 3, 4, 5)])
    (run_dir / "anomalies.jsonl").write_text(
        "".join(json.dumps({"kind": "k", "iteration": i}) + "\n" for i in (2, 4))
    )
    results = [json.dumps({"training_iteration": i, "r": 0.5}) for i in (1, 2, 3, 4, 5)]
    (trial_dir / "result.json").write_text("\n".join(results) + "\n" + '{"training_iter')
    write_csv(
        trial_dir / "progress.csv", ["r", "training_iteration"], [[0.5, i] for i in (1, 2, 3, 4)]
    )
    with (trial_dir / "progress.csv").open("a") as handle:
        handle.write("0.5\n")  # a row cut short by a kill
    checkpoint = trial_dir / "checkpoint_000000"
    return run_dir, TrialState("t1", "RUNNING", trial_dir, checkpoint, 3)


def test_trim_tables_keeps_each_table_up_to_the_checkpoint_iteration(run):
    run_dir, trial = run
    trim_tables(run_dir, [trial])
    assert column(run_dir / "metrics.csv", "iteration") == [1, 2, 3]
    assert column(run_dir / "metrics.csv", "env_steps") == [100, 200, 300]
    assert column(run_dir / "monitor.csv", "iteration") == [1, 2, 3]
    assert jsonl(run_dir / "anomalies.jsonl", "iteration") == [2]
    assert jsonl(trial.path / "result.json", "training_iteration") == [1, 2, 3]
    assert column(trial.path / "progress.csv", "training_iteration") == [1, 2, 3]
    assert not list(run_dir.rglob(".*.trimmed"))


def test_trim_tables_without_a_checkpoint_empties_the_tables_but_keeps_headers(run):
    run_dir, trial = run
    no_checkpoint = TrialState("t1", "RUNNING", trial.path, None, 0)
    trim_tables(run_dir, [no_checkpoint])
    assert (run_dir / "metrics.csv").read_text().strip() == "iteration,env_steps"
    assert (trial.path / "result.json").read_text() == ""


def test_trim_tables_of_a_sweep_leaves_the_run_tables_and_other_trials_alone(run):
    run_dir, trial = run
    before = (run_dir / "metrics.csv").read_text()
    trim_tables(None, [trial])
    assert (run_dir / "metrics.csv").read_text() == before
    assert jsonl(trial.path / "result.json", "training_iteration") == [1, 2, 3]


def test_resumed_skips_finished_trials_and_failed_ones_unless_asked(tmp_path):
    trials = [
        TrialState(name, status, tmp_path, None, 0)
        for name, status in [
            ("a", "TERMINATED"),
            ("b", "ERROR"),
            ("c", "RUNNING"),
            ("d", "PENDING"),
        ]
    ]
    assert [t.trial_id for t in resumed(trials)] == ["b", "c", "d"]
    assert [t.trial_id for t in resumed(trials, resume_errored=False)] == ["c", "d"]


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: b"", "empty"),
        (lambda data: pickle.dumps([1, 2]), "list"),
        (lambda data: b"not a pickle at all", "damaged"),
    ],
    ids=["truncated", "empty", "not-a-dict", "garbage"],
)
def test_a_damaged_tuner_pkl_is_refused_before_anything_else_and_nothing_changes(
    tmp_path, damage, words
):
    state = pickle.dumps({"_tune_config": list(range(1000))})
    (tmp_path / "tuner.pkl").write_bytes(damage(state))
    (tmp_path / "basic-variant-state-1.json").write_bytes(pickle.dumps({"ok": 1}))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ResumeError, match="tuner.pkl") as info:
        check_tune_state(tmp_path, RUN_SEARCH_STATE)
    assert words in str(info.value) and "Nothing was changed" in str(info.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_the_newest_search_state_is_checked_and_a_missing_one_is_refused(tmp_path):
    (tmp_path / "tuner.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ResumeError, match="missing"):
        check_tune_state(tmp_path, RUN_SEARCH_STATE)
    (tmp_path / "basic-variant-state-2026-01-01.json").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "basic-variant-state-2026-01-02.json").write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(ResumeError, match="2026-01-02.json: Tune's search state is damaged"):
        check_tune_state(tmp_path, RUN_SEARCH_STATE)


def fake_result(iteration: int) -> dict:
    return {
        "training_iteration": iteration,
        "num_env_steps_sampled_lifetime": 100 * iteration,
        "time_total_s": float(iteration),
        "env_runners": {"episode_return_mean": 0.5},
    }


def test_a_run_retried_from_a_checkpoint_writes_each_iteration_once(tmp_path):
    """The driver's callback drops the rows from a repeated iteration on, before Tune logs it."""
    from types import SimpleNamespace

    from rl_platform.training import _make_progress_callback

    run_dir, trial_dir = tmp_path, tmp_path / "trial"
    trial_dir.mkdir()
    trial = SimpleNamespace(trial_id="t1", local_path=str(trial_dir))
    callback = _make_progress_callback(run_dir, [], None)
    for iteration in (1, 2, 3, 2, 3, 4):  # a failure after 3, retried from iteration 1's checkpoint
        callback.on_trial_result(0, [trial], trial, fake_result(iteration))
        with (trial_dir / "result.json").open("a") as handle:  # what Tune's logger appends next
            handle.write(json.dumps(fake_result(iteration)) + "\n")
    assert column(run_dir / "metrics.csv", "iteration") == [1, 2, 3, 4]
    assert jsonl(trial_dir / "result.json", "training_iteration") == [1, 2, 3, 4]


def test_a_resumed_sweep_trial_writes_each_iteration_once(tmp_path):
    from types import SimpleNamespace

    from rl_platform.tuning import SweepProgress

    trial = SimpleNamespace(trial_id="t1", local_path=str(tmp_path))
    (tmp_path / "result.json").write_text(
        "".join(json.dumps(fake_result(i)) + "\n" for i in (1, 2, 3))
    )
    progress = SweepProgress("env_runners/episode_return_mean", {"training_iteration": 9})
    progress.on_trial_result(0, [trial], trial, fake_result(3))  # resumed at 2's checkpoint
    assert jsonl(tmp_path / "result.json", "training_iteration") == [1, 2]
