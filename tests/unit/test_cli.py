"""The CLI without Ray: bad input exits 2 in one paragraph and leaves nothing behind."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from rl_platform.cli import app

runner = CliRunner()


def rlp(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "rl_platform", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_bad_experiment_exits_2_without_traceback_or_run_dir(tmp_path, quickstart_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(quickstart_path.read_text().replace("lr: 5.0e-4", "lr: -1"))
    out = tmp_path / "runs"
    proc = rlp("train", str(bad), "--output", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert str(bad) in proc.stderr and "algorithm.hyperparams.lr = -1" in proc.stderr
    assert not out.exists()


def test_bad_override_exits_2(tmp_path, quickstart_path):
    out = tmp_path / "runs"
    proc = rlp("train", str(quickstart_path), "--set", "stop.iters=3", "--output", str(out))
    assert proc.returncode == 2
    assert "stop.iters: unknown key" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train"], "give an experiment YAML"),
        (["train", "--resume", "/nonexistent/run"], "no such run directory"),
    ],
)
def test_train_argument_errors_exit_2(args, fragment):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert fragment in result.output


def test_resume_of_a_non_run_directory_exits_2(tmp_path):
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run directory" in result.output


COMMANDS = [
    "train",
    "tune",
    "submit",
    "jobs list",
    "jobs status",
    "jobs logs",
    "jobs stop",
    "evaluate",
    "finetune",
    "serve",
    "monitor",
    "schema",
    "envs list",
    "envs check",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example" in result.output


def test_envs_list_and_check():
    listed = runner.invoke(app, ["envs", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "rendezvous" in listed.output and "ppo" in listed.output
    checked = runner.invoke(app, ["envs", "check", "rendezvous", "--set", "discrete=true"])
    assert checked.exit_code == 0, checked.output
    assert "FAIL" not in checked.output
    unknown = runner.invoke(app, ["envs", "check", "nope"])
    assert unknown.exit_code == 2


def test_schema_is_json_schema_of_the_experiment():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert {"name", "env", "algorithm", "stop"} <= set(schema["properties"])


def test_serve_refuses_bad_options_before_starting_anything(tmp_path):
    for args, message in [
        (["--detach"], "--address"),
        (["--split", "1.5"], "--split"),
        (["--port", "0"], "--port"),
    ]:
        result = runner.invoke(app, ["serve", str(tmp_path), *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_submit_passes_no_ship_package_on(monkeypatch, quickstart_path):
    from rl_platform import cluster

    seen = {}

    def fake_submit(experiment, overrides, **kwargs):
        seen.update(kwargs)
        raise cluster.ClusterError("stop here")

    monkeypatch.setattr(cluster, "submit", fake_submit)
    result = runner.invoke(app, ["submit", str(quickstart_path), "--no-ship-package"])
    assert result.exit_code == 1 and seen["ship_package"] is False
