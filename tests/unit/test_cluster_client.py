"""`rlp submit` / `rlp jobs` checks that need no cluster."""

import logging

import pytest
from typer.testing import CliRunner

from rl_platform.cli import app
from rl_platform.cluster import _check_storage, _warn_if_exposed, experiment_kind, resolve_address
from rl_platform.config import ConfigError, load_experiment
from rl_platform.training import output_dir


def test_storage_must_be_a_cloud_uri_or_an_absolute_shared_path():
    assert _check_storage("/data/runs", "x.yaml") == "/data/runs"
    assert _check_storage("s3://bucket/runs", "x.yaml") == "s3://bucket/runs"
    for bad, message in [
        (None, "needs a storage path"),
        ("runs", "absolute path"),
    ]:
        with pytest.raises(ConfigError, match=message):
            _check_storage(bad, "x.yaml")


def test_addresses(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None) == "http://127.0.0.1:8265"
    assert resolve_address("10.0.0.10:8265") == "http://10.0.0.10:8265"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a GCS address, not the Jobs API
    assert resolve_address(None) == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:9999")
    assert resolve_address(None) == "http://127.0.0.1:9999"


def test_plain_http_to_a_public_address_warns(caplog):
    with caplog.at_level(logging.WARNING):
        _warn_if_exposed("http://127.0.0.1:8265")
        _warn_if_exposed("http://10.1.2.3:8265")
        assert not caplog.records
        _warn_if_exposed("http://8.8.8.8:8265")
    assert "SSH tunnel" in caplog.text


def test_a_sweep_yaml_runs_rlp_tune(quickstart_path):
    assert experiment_kind(load_experiment(quickstart_path)) == "train"
    sweep = load_experiment(quickstart_path, ["tune={num_samples: 2}"])
    assert experiment_kind(sweep) == "tune"


def test_yaml_storage_is_the_default_output(quickstart_path):
    experiment = load_experiment(quickstart_path, ["storage=/data/runs"])
    assert str(output_dir(None, experiment)) == "/data/runs"
    assert str(output_dir("elsewhere", experiment)) == "elsewhere"
    assert str(output_dir(None, load_experiment(quickstart_path))) == "runs"


def test_submit_refuses_bad_input_before_contacting_a_cluster(quickstart_path, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["submit", str(quickstart_path)])
    assert result.exit_code == 2 and "storage" in result.output
    result = runner.invoke(app, ["submit", str(tmp_path / "missing.yaml"), "--storage", "/d"])
    assert result.exit_code == 2 and "no such experiment file" in result.output


@pytest.mark.parametrize(
    ("uri", "refused"),
    [
        ("sqlite:///mlflow.db", True),
        ("file:mlruns", True),
        ("sqlite:////data/mlflow.db", False),
        ("file:///data/mlruns", False),
        ("http://mlflow:5000", False),
    ],
)
def test_submit_refuses_an_mlflow_store_the_job_would_lose(quickstart_path, uri, refused):
    """The tracking section goes to the job whole; a relative store path would not survive."""
    items = ["storage=/data/runs", f"tracking.mlflow.tracking_uri={uri}"]
    result = CliRunner().invoke(
        app,
        ["submit", str(quickstart_path), *[a for i in items for a in ("--set", i)]],
        env={"RAY_API_SERVER_ADDRESS": "http://127.0.0.1:9"},  # nothing listens there
    )
    if refused:
        assert result.exit_code == 2 and "relative path" in result.output, result.output
    else:  # past the checks, to the (absent) cluster
        assert "cannot reach the Ray Jobs API" in result.output, result.output


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Failed to connect to Ray at address: http://127.0.0.1:40329.", "cannot reach"),
        ("Request failed with status code 401: Unauthorized", "refused the request"),
        ("403 Client Error: Forbidden for url", "refused the request"),
        ("token authentication is enabled", "refused the request"),
    ],
)
def test_an_error_is_explained_by_its_status_not_by_digits_of_the_port(message, expected):
    from rl_platform.cluster import _explain

    assert expected in _explain("http://127.0.0.1:40329", ConnectionError(message))
