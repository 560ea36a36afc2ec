"""Runs and checkpoints under a storage URI, fetched for evaluate and serve (no Ray)."""

import pytest
from policy_exports import run_directory

from rl_platform.checkpoints import PolicyExportError, pack_export, unpack_export
from rl_platform.evaluation.policy import TrainedPolicy
from rl_platform.evaluation.target import resolve_target
from rl_platform.storage import StorageError, fetched, remote_name

EXPERIMENT = {
    "name": "fetch_unit",
    "env": {"id": "rendezvous", "config": {"num_agents": 3, "episode_length": 20}},
    "algorithm": {"id": "ppo", "shared_policy": True},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory with one checkpoint whose RLlib state sits beside its export."""
    run = run_directory(
        tmp_path_factory.mktemp("bucket") / "runs" / "fetch_unit" / "t0", EXPERIMENT
    )
    (run / "trial" / "checkpoint_000000" / "algorithm_state.pkl").write_bytes(b"pickle")
    return run


def test_a_run_uri_brings_the_driver_files_and_exports_only(run):
    with fetched(run.as_uri()) as local:
        assert local != run and local.name == run.name
        assert (local / "config.yaml").read_text() == (run / "config.yaml").read_text()
        assert (local / "summary.json").is_file() and (local / "metrics.csv").is_file()
        checkpoint = local / "trial" / "checkpoint_000000"
        assert (checkpoint / "policies" / "manifest.json").is_file()
        assert not (checkpoint / "algorithm_state.pkl").exists()  # no pickled state
        assert not (checkpoint / "learner_group").exists()
        # summary.json's absolute best_checkpoint resolves inside the local copy
        target = resolve_target(local)
        assert target.checkpoint.resolve() == checkpoint.resolve()
        assert target.run_dir == local and target.env_id == "rendezvous"
    assert not local.exists()  # the temp copy is gone


def test_a_checkpoint_uri_brings_its_run_too(run):
    checkpoint = run / "trial" / "checkpoint_000000"
    with fetched(checkpoint.as_uri()) as local:
        assert local.name == "checkpoint_000000" and local.parent.name == "trial"
        target = resolve_target(local)
        assert target.run_dir == local.parents[1]
        assert (target.run_dir / "config.yaml").is_file()


def test_a_bare_checkpoint_uri(tmp_path, run):
    import shutil

    bare = tmp_path / "exported"
    shutil.copytree(run / "trial" / "checkpoint_000000" / "policies", bare / "policies")
    with fetched(bare.as_uri()) as local:
        assert resolve_target(local).run_dir is None


def test_a_path_is_used_as_it_is(run):
    with fetched(run) as local:
        assert local == run
    assert run.is_dir()


@pytest.mark.parametrize(
    ("where", "message"),
    [("nowhere", "no such run directory or checkpoint"), ("empty", "neither a run directory")],
)
def test_a_missing_or_wrong_uri_is_a_clear_error(tmp_path, where, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match=message), fetched((tmp_path / where).as_uri()):
        pass


def test_an_unknown_scheme_is_a_clear_error():
    with pytest.raises(StorageError, match="cannot read it"), fetched("nosuch://bucket/run"):
        pass


def test_remote_name():
    assert remote_name("s3://bucket/runs/quickstart/20261125-101500/") == "20261125-101500"
    assert remote_name("file:///tmp/x/checkpoint_000001") == "checkpoint_000001"


def test_an_export_travels_as_bytes_and_loads_the_same(run, tmp_path):
    import numpy as np

    checkpoint = run / "trial" / "checkpoint_000000"
    files = pack_export(checkpoint)
    assert set(files) == {"manifest.json", "shared.pt"}
    obs = np.random.default_rng(0).normal(size=(4, 3, 13)).astype(np.float32)
    here = TrainedPolicy(checkpoint)
    obs = obs[..., : here.modules["shared"].observation_space.shape[0]]
    shipped = TrainedPolicy.from_export(files)
    np.testing.assert_array_equal(here.actions(obs), shipped.actions(obs))
    with pytest.raises(PolicyExportError, match="refusing"):
        unpack_export({"../evil.pt": b"x"}, tmp_path)


def test_cli_evaluate_and_serve_refuse_a_missing_uri(cli, tmp_path):
    missing = (tmp_path / "nothing").as_uri()
    result = cli("evaluate", missing, "--workers", "0", "--episodes", "1")
    assert result.exit_code == 2 and "no such run directory" in result.output
    result = cli("serve", missing)
    assert result.exit_code == 2 and "no such run directory" in result.output
