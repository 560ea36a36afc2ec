"""The tracking section without Ray: validation, missing packages, the callbacks it builds."""

import pickle
import sys
from types import SimpleNamespace

import pytest
import yaml

from rl_platform.config import ConfigError, experiment_json_schema, load_experiment
from rl_platform.tracking import (
    EXPERIMENT_TAG,
    RUN_DIR_TAG,
    check_tracking,
    tracking_callbacks,
    trial_namer,
)

WANDB = {"project": "markets", "entity": "team", "group": "g", "mode": "offline", "tags": ["a"]}
MLFLOW = {"tracking_uri": "http://127.0.0.1:5000", "experiment_name": "e", "tags": {"k": "v"}}


def experiment(quickstart_path, **tracking):
    return load_experiment(quickstart_path, {"tracking": tracking} if tracking else None)


def test_the_section_validates_and_round_trips_through_the_resolved_yaml(quickstart_path):
    config = experiment(quickstart_path, wandb=WANDB, mlflow=MLFLOW)
    assert config.tracking.wandb.project == "markets"
    assert config.tracking.mlflow.tags == {"k": "v"}
    assert load_experiment(yaml.safe_load(config.to_yaml())) == config
    assert experiment(quickstart_path).tracking is None  # off unless asked for


@pytest.mark.parametrize(
    ("tracking", "fragments"),
    [
        ({"wandb": {"project": "p", "mode": "sometimes"}}, ["tracking.wandb.mode", "offline"]),
        ({"wandb": {"project": "p", "api_key": "x"}}, ["tracking.wandb.api_key", "unknown"]),
        ({"wandb": {"project": "a/b"}}, ["tracking.wandb.project"]),
        ({"wandb": {"project": "p", "tags": ["x" * 65]}}, ["tracking.wandb.tags", "64"]),
        ({"wandb": {}}, ["tracking.wandb.project"]),
        ({"mlflow": {"tracking_uri": "mlruns"}}, ["tracking.mlflow.tracking_uri", "sqlite:///"]),
        (
            {"mlflow": {"tracking_uri": "https://me:secret@mlflow.example.com"}},
            ["tracking.mlflow.tracking_uri", "password", "MLFLOW_TRACKING_PASSWORD"],
        ),
        ({"comet": {}}, ["tracking.comet", "unknown"]),
    ],
)
def test_bad_values_are_refused_naming_the_field(quickstart_path, tracking, fragments):
    with pytest.raises(ConfigError) as err:
        experiment(quickstart_path, **tracking)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_schema_shows_the_section():
    schema = experiment_json_schema()
    assert "tracking" in schema["properties"]
    names = {"TrackingSpec", "WandbSpec", "MLflowSpec"}
    assert names <= set(schema["$defs"])
    assert schema["$defs"]["WandbSpec"]["required"] == ["project"]
    assert schema["$defs"]["MLflowSpec"]["required"] == ["tracking_uri"]


def test_rlp_schema_prints_the_section(cli):
    result = cli("schema")
    assert result.exit_code == 0
    assert '"tracking"' in result.stdout and '"MLflowSpec"' in result.stdout


@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_a_missing_package_is_a_config_error_naming_the_extra(
    quickstart_path, monkeypatch, tracker
):
    monkeypatch.setitem(sys.modules, tracker, None)  # as if not installed
    config = experiment(quickstart_path, **{tracker: WANDB if tracker == "wandb" else MLFLOW})
    with pytest.raises(ConfigError) as err:
        check_tracking(config)
    expected = f"tracking.{tracker} needs the tracking extra: pip install 'rl_platform[tracking]'"
    assert str(err.value) == expected
    check_tracking(experiment(quickstart_path))  # nothing asked, nothing needed


@pytest.mark.parametrize(
    "command", [["train"], ["train", "--seeds", "0-1"], ["tune", "--num-samples", "1"]]
)
def test_cli_refuses_a_missing_tracker_with_exit_2_before_anything_starts(
    cli, make_experiment, tmp_path, monkeypatch, command
):
    monkeypatch.setitem(sys.modules, "wandb", None)
    path = make_experiment(overrides={"tracking": {"wandb": {"project": "p"}}})
    out = tmp_path / "runs"
    result = cli(*command, path, "--output", out)
    assert result.exit_code == 2, result.output
    assert "pip install 'rl_platform[tracking]'" in result.stderr
    assert not out.exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_callbacks_carry_the_section_and_the_run_directory(quickstart_path, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config = experiment(quickstart_path, wandb=WANDB, mlflow=MLFLOW)
    assert tracking_callbacks(experiment(quickstart_path), tmp_path) == []
    wandb, mlflow = tracking_callbacks(config, tmp_path, group="unused: the YAML names one")
    assert (wandb.project, wandb.group) == ("markets", "g")
    assert wandb.kwargs["mode"] == "offline"
    assert wandb.kwargs["entity"] == "team" and wandb.kwargs["tags"] == ["a"]
    assert wandb.kwargs["dir"] == str(tmp_path.resolve())  # offline runs beside the trials
    assert str(tmp_path.resolve()) in wandb.kwargs["notes"]
    assert (mlflow.tracking_uri, mlflow.experiment_name) == (MLFLOW["tracking_uri"], "e")
    assert mlflow.tags == {
        RUN_DIR_TAG: str(tmp_path.resolve()),
        EXPERIMENT_TAG: "quickstart",
        "k": "v",
    }


def test_wandb_defaults_come_from_the_experiment_and_this_environment(
    quickstart_path, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    config = experiment(quickstart_path, wandb={"project": "p"})
    (wandb,) = tracking_callbacks(config, "s3://bucket/runs/quickstart/x", group="quickstart/x")
    assert wandb.group == "quickstart/x"
    assert wandb.kwargs["mode"] == "disabled"  # the Ray worker logging it may not see $WANDB_MODE
    assert wandb.kwargs["dir"] == str(tmp_path / "elsewhere")
    assert "s3://bucket/runs/quickstart/x" in wandb.kwargs["notes"]
    monkeypatch.delenv("WANDB_DIR")
    (wandb,) = tracking_callbacks(config, "s3://bucket/runs/quickstart/x")
    assert "dir" not in wandb.kwargs and wandb.group == "quickstart"


def test_trial_names_are_picklable_and_name_the_trial_folder():
    name = trial_namer("quickstart/20260101-000000", lambda trial: f"trial_{trial.trial_id}")
    trial = SimpleNamespace(trial_id="ab_00001")
    assert name(trial) == "quickstart/20260101-000000/trial_ab_00001"
    from rl_platform.tuning.trial import trial_dirname

    assert pickle.loads(pickle.dumps(trial_namer("x", trial_dirname)))(trial) == "x/trial_ab_00001"


class FakeTrial:
    """What Tune's MLflow callback reads of a trial: its config and its name."""

    config = {"lr": 0.001, "model": {"hidden": [64, 64]}}

    def __str__(self):
        return "quickstart/20260101-000000/trial"


def test_mlflow_callback_logs_params_then_each_result_in_one_batch(quickstart_path, tmp_path):
    """Also the guard on Ray's private ``_trial_runs`` the batched logging reads."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    (callback,) = tracking_callbacks(
        experiment(quickstart_path, mlflow={"tracking_uri": uri}), tmp_path
    )
    callback.setup()
    trial = FakeTrial()
    callback.log_trial_start(trial)
    for iteration in (1, 2):
        result = {
            "training_iteration": iteration,
            "env_runners": {"episode_return_mean": -1.5 * iteration, "agent#0": 1.0},
            "learners": {"shared": {"total_loss": 0.25 / iteration}},
            "done": False,
            "date": "2026-01-01",
            "config": {"lr": 0.001},
        }
        callback.log_trial_result(iteration, trial, result)
    callback.log_trial_end(trial)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert run.info.run_name == str(trial) and run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.001" and run.data.params["model/hidden"] == "[64, 64]"
    assert run.data.tags[RUN_DIR_TAG] == str(tmp_path.resolve())
    history = client.get_metric_history(run.info.run_id, "env_runners/episode_return_mean")
    assert [(m.step, m.value) for m in history] == [(1, -1.5), (2, -3.0)]
    assert [
        m.value for m in client.get_metric_history(run.info.run_id, "learners/shared/total_loss")
    ] == [0.25, 0.125]
    # no config, no bools or strings, no name MLflow refuses (which would fail the batch)
    assert set(run.data.metrics) == {
        "training_iteration",
        "env_runners/episode_return_mean",
        "learners/shared/total_loss",
    }
