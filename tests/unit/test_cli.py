"""The CLI without Ray: bad input exits 2 in one paragraph and leaves nothing behind."""

import json

import pytest


def test_bad_experiment_exits_2_without_traceback_or_run_dir(cli, make_experiment, tmp_path):
    bad = make_experiment(overrides={"algorithm.hyperparams.lr": -1})
    out = tmp_path / "runs"
    result = cli("train", bad, "--output", out)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback: a clean exit
    assert str(bad) in result.stderr and "algorithm.hyperparams.lr = -1" in result.stderr
    assert not out.exists()


def test_bad_override_exits_2(cli, tmp_path, quickstart_path):
    out = tmp_path / "runs"
    result = cli("train", quickstart_path, "--set", "stop.iters=3", "--output", out)
    assert result.exit_code == 2
    assert "stop.iters: unknown key" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train"], "give an experiment YAML"),
        (["train", "--resume", "/nonexistent/run"], "no such run directory"),
    ],
)
def test_train_argument_errors_exit_2(cli, args, fragment):
    result = cli(*args)
    assert result.exit_code == 2
    assert fragment in result.output


def test_resume_of_a_non_run_directory_exits_2(cli, tmp_path):
    result = cli("train", "--resume", tmp_path)
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
    "export",
    "monitor",
    "compare",
    "schema",
    "envs list",
    "envs check",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(cli, command):
    result = cli(*command.split(), "--help")
    assert result.exit_code == 0
    assert "Example" in result.output


def test_envs_list_and_check(cli):
    listed = cli("envs", "list")
    assert listed.exit_code == 0 and "rendezvous" in listed.output and "ppo" in listed.output
    checked = cli("envs", "check", "rendezvous", "--set", "discrete=true")
    assert checked.exit_code == 0, checked.output
    assert "FAIL" not in checked.output
    unknown = cli("envs", "check", "nope")
    assert unknown.exit_code == 2


def test_envs_check_runs_pettingzoos_api_test_and_names_the_skipped_checks(cli):
    pytest.importorskip("mpe2")
    result = cli("envs", "check", "pettingzoo:mpe2.simple_spread_v3:parallel_env")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "pass  pettingzoo parallel_api_test  " in lines
    assert "pass  pettingzoo parallel_seed_test  " in lines
    skipped = [line for line in lines if line.startswith("skip  ")]
    assert any("api_test" in line and "ParallelEnv" in line for line in skipped), lines
    assert any("potentials" in line and "own envs" in line for line in skipped), lines


@pytest.mark.parametrize(
    ("env_id", "override", "fragment"),
    [
        ("rendezvous", "nope=1", "nope: unknown key"),
        ("rendezvous", "num_agents=abc", "num_agents = 'abc'"),
        ("rendezvous", "num_agents", "not of the form key.path=value"),
        ("pettingzoo:mpe2.simple_spread_v3:parallel_env", "nope=1", "'nope'"),
        ("pettingzoo:mpe2.simple_spread_v3:parallel_env", "N=zero", "cannot be built"),
    ],
)
def test_envs_check_bad_set_exits_2_in_one_paragraph(cli, env_id, override, fragment):
    if env_id.startswith("pettingzoo:"):
        pytest.importorskip("mpe2")
    result = cli("envs", "check", env_id, "--set", override)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, no traceback
    assert result.stderr.startswith("error: ") and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_schema_is_json_schema_of_the_experiment(cli):
    result = cli("schema")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert {"name", "env", "algorithm", "stop"} <= set(schema["properties"])


def test_serve_refuses_bad_options_before_starting_anything(cli, tmp_path):
    for args, message in [
        (["--detach"], "--address"),
        (["--split", "1.5"], "--split"),
        (["--port", "0"], "--port"),
    ]:
        result = cli("serve", tmp_path, *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_submit_passes_no_ship_package_on(cli, monkeypatch, quickstart_path):
    from rl_platform import cluster

    seen = {}

    def fake_submit(experiment, overrides, **kwargs):
        seen.update(kwargs)
        raise cluster.ClusterError("stop here")

    monkeypatch.setattr(cluster, "submit", fake_submit)
    result = cli("submit", quickstart_path, "--no-ship-package")
    assert result.exit_code == 1 and seen["ship_package"] is False


def test_submit_refuses_an_unknown_vmas_scenario_in_one_line(cli, make_experiment):
    path = make_experiment("vmas:nope", "mappo")
    result = cli("submit", path, "--address", "http://127.0.0.1:1")
    assert result.exit_code == 2 and "not a VMAS scenario" in result.output
    assert "Traceback" not in result.output


# What the process imports is the point here, so `python -m rl_platform` runs for real.
@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["schema"],
        ["train", "missing_field.yaml"],
        ["train", "unknown_algorithm.yaml"],
        ["train", "valid.yaml", "--set", "stop.iters=3"],
        ["train", "valid.yaml", "--set", "algorithm.hyperparams.lr=-1"],
    ],
    ids=["help", "schema", "missing-field", "unknown-algorithm", "bad-override", "bad-value"],
)
def test_help_schema_and_a_refused_yaml_import_neither_torch_nor_ray(
    rlp, make_experiment, tmp_path, args
):
    make_experiment(path=tmp_path / "missing_field.yaml", overrides={"env": None})
    make_experiment("rendezvous", "nope", path=tmp_path / "unknown_algorithm.yaml")
    make_experiment(path=tmp_path / "valid.yaml")
    proc = rlp(*args, cwd=tmp_path, python_options=("-X", "importtime"))
    assert proc.returncode == (2 if args[0] == "train" else 0), proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert not imported & {"torch", "ray"}
    assert not (tmp_path / "runs").exists()


def named_ids(text: str) -> dict[str, int]:
    """How often each registered env id is named in `text` (as a whole word)."""
    import re

    from rl_platform import registry

    ids = [*registry.ENVS, *registry.PETTINGZOO_SHORT_IDS]
    return {i: len(re.findall(rf"(?<![\w:.]){re.escape(i)}(?![\w:])", text)) for i in ids}


@pytest.mark.parametrize(
    "where",
    ["envs check", "train yaml", "train --set", "tune yaml", "submit yaml"],
)
def test_an_unknown_env_id_error_names_each_id_once_at_most(cli, tmp_path, where):
    import yaml

    experiment = tmp_path / "bad.yaml"
    spec = {"name": "bad", "env": {"id": "nope"}, "algorithm": {"id": "ppo"}}
    experiment.write_text(yaml.safe_dump(spec))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({**spec, "env": {"id": "rendezvous"}}))
    out = tmp_path / "runs"
    args = {
        "envs check": ["envs", "check", "nope"],
        "train yaml": ["train", experiment, "--output", out],
        "train --set": ["train", good, "--set", "env.id=nope", "--output", out],
        "tune yaml": ["tune", experiment, "--output", out],
        "submit yaml": ["submit", experiment, "--address", "http://127.0.0.1:1"],
    }[where]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "nope" in result.stderr
    counts = named_ids(result.stderr)
    assert set(counts.values()) == {1}, counts  # every id is listed, once
    assert not out.exists()


def test_envs_list_names_each_id_once(cli):
    from rl_platform import registry

    result = cli("envs", "list")
    assert result.exit_code == 0
    rows = [line.split("│") for line in result.stdout.splitlines() if line.startswith("│")]
    first_cells = [row[1].strip() for row in rows]
    first_cells = [cell for cell in first_cells if cell]
    assert all(first_cells.count(i) == 1 for i in registry.env_ids()), first_cells
