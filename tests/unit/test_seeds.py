"""Multi-seed runs without Ray: seed specs, curves, aggregate.json, submit, resume checks."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rl_platform.config import ConfigError
from rl_platform.resume import ResumeError
from rl_platform.runs import AGGREGATE_FILE, AGGREGATE_KEYS, RunDir
from rl_platform.seeds import (
    SCORE,
    _check_resumable,
    aggregate_record,
    align_curves,
    parse_seeds,
    read_curve,
    seed_trial_dirname,
    write_aggregate,
)

ROOT = Path(__file__).resolve().parents[2]
TWO_STEP = ROOT / "experiments" / "two_step_qmix.yaml"


@pytest.mark.parametrize(
    ("spec", "seeds"),
    [
        ("0-4", [0, 1, 2, 3, 4]),
        ("0,2,5", [0, 2, 5]),
        ("3", [3]),
        ("0-2,7", [0, 1, 2, 7]),
        (" 8 , 1 - 2 ", [8, 1, 2]),
        ("5-5", [5]),
    ],
)
def test_seed_specs(spec, seeds):
    assert parse_seeds(spec) == seeds


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("a", "neither a seed"),
        ("-1", "neither a seed"),
        ("1-", "neither a seed"),
        ("1,,2", "neither a seed"),
        ("1.5", "neither a seed"),
        ("²", "neither a seed"),
        ("4-0", "runs backwards"),
        ("0-3,2", "seed 2 is given twice"),
        ("0-5000", "more than 1000"),
    ],
)
def test_a_bad_seed_spec_is_a_config_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_seeds(spec)


def test_a_bad_seed_spec_exits_like_a_bad_config_before_ray(cli):
    result = cli("train", TWO_STEP, "--seeds", "4-0")
    assert result.exit_code == 2
    assert "runs backwards" in result.output
    result = cli("train", "--resume", ".", "--seeds", "0-1")
    assert result.exit_code == 2 and "--seeds cannot change a resumed run" in result.output


def test_curves_are_interpolated_on_the_env_steps_every_seed_reached():
    linear = ([0, 100, 200, 300], [0.0, 1.0, 2.0, 3.0])  # value = steps / 100
    later = ([50, 150, 250], [5.0, 5.0, math.nan])  # NaN dropped: reaches 150 only
    grid, values = align_curves([linear, later], points=50)
    assert grid[0] == 50 and grid[-1] == 150
    assert len(grid) == 2  # no more points than the shortest curve has
    np.testing.assert_allclose(values[0], grid / 100)
    np.testing.assert_allclose(values[1], 5.0)


def test_curves_of_equal_grids_are_kept_and_unsorted_rows_sorted():
    grid, values = align_curves([([0, 10, 20], [1, 2, 3]), ([20, 0, 10], [6, 4, 5])], points=3)
    np.testing.assert_allclose(grid, [0, 10, 20])
    np.testing.assert_allclose(values, [[1, 2, 3], [4, 5, 6]])


def test_a_seed_without_a_finite_point_gives_no_curve():
    grid, values = align_curves([([0, 10], [1, 2]), ([0, 10], [math.nan, math.nan])])
    assert grid.size == 0 and values.shape == (2, 0)


def test_the_curve_comes_from_metrics_csv(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "iteration,env_steps,episode_return_mean\n1,128,nan\n2,256,4.5\n3,384,4.75\n4,51"
    )
    assert read_curve(tmp_path) == ([256.0, 384.0], [4.5, 4.75])
    assert read_curve(tmp_path / "missing") == ([], [])
    (tmp_path / "metrics.csv").write_text(
        "iteration,env_steps,episode_return_mean,reward_env\n1,128,9.5,4.75\n2,256,10,5\n"
    )
    assert read_curve(tmp_path) == ([128.0, 256.0], [4.75, 5.0])  # per agent: the task score


def fabricated_record(scores, reps=200):
    seeds = list(range(len(scores)))
    steps = np.array([0.0, 500.0, 1000.0])
    curves = np.array([[1.0 + s, 2.0 + s, 3.0 + s] for s in seeds])
    record = aggregate_record(
        name="two_step_qmix",
        algorithm="qmix",
        env="two_step_game",
        episodes=100,
        scores=dict(zip(seeds, scores, strict=True)),
        runs={s: f"seed_{s}" for s in seeds},
        random=4.75,
        baselines={"safe": 7.0, "optimal": 8.0},
        grid=steps,
        curves=curves,
        reps=reps,
    )
    return record, curves


def test_aggregate_json_has_exactly_the_shared_format(tmp_path):
    record, curves = fabricated_record([8.0, 8.0, 8.0, 7.0, 8.0])
    write_aggregate(tmp_path, record, curves)
    data = json.loads((tmp_path / AGGREGATE_FILE).read_text())
    assert set(data) == AGGREGATE_KEYS
    assert data["kind"] == "seeds" and data["score"] == SCORE == "greedy_return"
    assert data["seeds"] == [0, 1, 2, 3, 4] and data["scores"] == [8.0, 8.0, 8.0, 7.0, 8.0]
    assert data["runs"] == {str(s): f"seed_{s}" for s in range(5)}
    assert data["episodes"] == 100 and data["random"] == 4.75
    assert data["baselines"] == {"safe": 7.0, "optimal": 8.0}
    for name in ("iqm", "mean"):
        assert set(data[name]) == {"point", "low", "high"}
        assert data[name]["low"] <= data[name]["point"] <= data[name]["high"]
    assert data["iqm"]["point"] == pytest.approx(8.0)  # the 7 is outside the middle half
    assert data["mean"]["point"] == pytest.approx(7.8)
    assert set(data["curve"]) == {"env_steps", "iqm", "low", "high"}
    assert data["curve"]["env_steps"] == [0.0, 500.0, 1000.0]
    assert len(data["curve"]["iqm"]) == len(data["curve"]["low"]) == 3
    assert data["machine"]["cpus"] >= 1
    assert (tmp_path / "aggregate.png").read_bytes()[:4] == b"\x89PNG"


def test_equal_scores_have_a_zero_width_interval(tmp_path):
    record, _ = fabricated_record([8.0] * 10)
    assert record["iqm"] == {"point": 8.0, "low": 8.0, "high": 8.0}


def test_an_aggregate_without_a_curve_still_plots(tmp_path):
    record = aggregate_record(
        name="x",
        algorithm="vdn",
        env="two_step_game",
        episodes=10,
        scores={3: 7.0, 5: 7.0},
        runs={3: "seed_3", 5: "seed_5"},
        random=4.75,
        baselines={},
        grid=np.zeros(0),
        curves=np.zeros((2, 0)),
        reps=200,
    )
    assert record["curve"] == {"env_steps": [], "iqm": [], "low": [], "high": []}
    assert record["seeds"] == [3, 5] and record["runs"] == {"3": "seed_3", "5": "seed_5"}
    write_aggregate(tmp_path, record, np.zeros((2, 0)))
    assert (tmp_path / "aggregate.png").is_file()


def test_seed_directories_of_a_group(tmp_path):
    group = RunDir(tmp_path)
    assert not group.is_seed_group()
    for seed in (10, 2, 0):
        group.seed_dir(seed).mkdir()
    (tmp_path / "seed_x").mkdir()
    group.seeds.write_text('{"seeds": [0, 2, 10]}')
    assert group.is_seed_group()
    assert list(group.seed_dirs()) == [0, 2, 10]
    assert group.seed_dir(2) == tmp_path / "seed_2"
    assert group.aggregate == tmp_path / AGGREGATE_FILE


def test_each_seed_trial_lands_in_its_seed_run_directory():
    trial = SimpleNamespace(config={"seed": 7}, storage=SimpleNamespace(trial_dir_name=None))
    assert seed_trial_dirname(trial) == "seed_7"
    assert trial.relative_logdir == "seed_7/trial" == trial.storage.trial_dir_name


def test_a_directory_that_is_no_group_or_finished_is_not_resumed(tmp_path):
    with pytest.raises(ResumeError, match="not a multi-seed group"):
        _check_resumable(tmp_path)
    group = RunDir(tmp_path)
    group.seeds.write_text('{"seeds": [0, 1], "episodes": 20}')
    with pytest.raises(ResumeError, match="no Tune experiment state"):
        _check_resumable(tmp_path)
    (tmp_path / "tuner.pkl").write_bytes(b"x")
    (tmp_path / "experiment_state-1.json").write_text("{}")
    group.aggregate.write_text("{}")
    with pytest.raises(ResumeError, match="already finished"):
        _check_resumable(tmp_path)
    group.aggregate.unlink()
    group.seed_dir(0).mkdir()
    RunDir(group.seed_dir(0)).config.write_text(TWO_STEP.read_text())
    experiment, seeds, episodes = _check_resumable(tmp_path)
    assert experiment.name == "two_step_qmix" and seeds == [0, 1] and episodes == 20


def test_the_metrics_table_has_no_seed_column():
    from rl_platform.training import IterationRow

    row = IterationRow(1, 128, 4.5, 100.0, 1.0, seed=3)
    assert "seed" not in row.csv_row([])


class FakeJobs:
    """A Ray Jobs client that records what it was asked to submit."""

    def __init__(self):
        self.submitted = {}

    def submit_job(self, **kwargs):
        self.submitted = kwargs
        return kwargs["submission_id"]

    def get_address(self):
        return "http://127.0.0.1:8265"


def test_submit_passes_the_seeds_to_the_jobs_rlp_train(monkeypatch):
    from rl_platform import cluster

    client = FakeJobs()
    monkeypatch.setattr(cluster, "job_client", lambda address=None: client)
    job = cluster.submit(TWO_STEP, storage="/data/runs", seeds="0-2,5")
    assert job.entrypoint.endswith("--output /data/runs --seeds 0,1,2,5")
    assert client.submitted["entrypoint"] == job.entrypoint
    assert client.submitted["metadata"]["seeds"] == "0,1,2,5"
    job = cluster.submit(TWO_STEP, storage="/data/runs")
    assert "--seeds" not in job.entrypoint


def test_submit_refuses_seeds_it_cannot_run(monkeypatch):
    from rl_platform import cluster

    monkeypatch.setattr(cluster, "job_client", lambda address=None: FakeJobs())
    with pytest.raises(ConfigError, match="runs backwards"):
        cluster.submit(TWO_STEP, storage="/data/runs", seeds="3-1")
    with pytest.raises(ConfigError, match="sweep YAML"):
        cluster.submit(TWO_STEP, ["tune={num_samples: 2}"], storage="/data/runs", seeds="0-1")
    with pytest.raises(ConfigError, match="every node sees"):
        cluster.submit(TWO_STEP, storage="s3://bucket/runs", seeds="0-1")


def test_rlp_submit_takes_seeds(cli):
    result = cli("submit", TWO_STEP, "--storage", "/data/runs", "--seeds", "x")
    assert result.exit_code == 2 and "neither a seed" in result.output


def test_a_group_is_scored_as_rlp_evaluate_scores_each_seed(tmp_path):
    """Seeds of fresh (untrained) PPO exports: each score is evaluate's policy score."""
    from policy_exports import run_directory

    from rl_platform.config import load_experiment
    from rl_platform.evaluation.suite import SuiteSettings, evaluate
    from rl_platform.seeds import aggregate_group

    experiment = {
        "name": "seeds_unit",
        "env": {"id": "rendezvous", "config": {"num_agents": 3, "episode_length": 8}},
        "algorithm": {"id": "ppo", "shared_policy": True},
    }
    group = RunDir(tmp_path)
    checkpoints = {}
    for seed in (0, 1):
        run = run_directory(group.seed_dir(seed), {**experiment, "seed": seed})
        checkpoints[seed] = run / "trial" / "checkpoint_000000"
    record = aggregate_group(tmp_path, load_experiment(experiment), checkpoints, episodes=4)
    assert json.loads(group.aggregate.read_text()) == record
    assert record["runs"] == {"0": "seed_0", "1": "seed_1"} and record["episodes"] == 4
    assert record["curve"]["env_steps"] == [1000.0]  # one metrics row per seed
    settings = SuiteSettings(episodes=4, baselines=False)
    result = evaluate(group.seed_dir(1), settings, report=tmp_path / "report", workers=0).result
    assert record["scores"][1] == pytest.approx(result["scores"]["policy"]["mean"])
    assert record["random"] == pytest.approx(result["scores"]["random"]["mean"])
    assert set(record["baselines"]) == set(result["scores"]) - {"policy", "random"}


def test_the_final_table_gives_each_seed_then_iqm_and_mean_and_the_group(tmp_path):
    from rl_platform.cli.output import console
    from rl_platform.cli.train import SeedsProgress, print_seeds_summary
    from rl_platform.seeds import SeedsResult
    from rl_platform.training import IterationRow

    record, _ = fabricated_record([8.0, 8.0, 7.0])
    runs = {s: SimpleNamespace(status="finished", iterations=60) for s in range(3)}
    result = SeedsResult(tmp_path / "group", "finished", [0, 1, 2], runs, record)
    with console.capture() as captured:
        SeedsProgress()(IterationRow(2, 256, 4.5, 100.0, 1.5, seed=7))
        print_seeds_summary(result)
    text = captured.get()
    assert text.splitlines()[1].split() == ["7", "2", "256", "4.500", "—", "100", "1.5s"]
    assert "7.000" in text and "8.000" in text
    assert "IQM: 7.667" in text and "mean: 7.667" in text and "95% CI [" in text
    assert "random 4.750, safe 7.000, optimal 8.000" in text
    assert f"group directory: {tmp_path / 'group'}" in text.replace("\n", "")
