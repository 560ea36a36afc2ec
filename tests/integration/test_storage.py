"""Runs written to cloud storage: a `file://` URI stands in for s3:// or gs:// here."""

import json
from pathlib import Path

from quickstart_runs import QUICKSTART, TINY, rlp, sets

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_lands_whole_on_a_storage_uri(tmp_path, ray_address):
    items = [*TINY, "stop.training_iteration=2", "checkpoint.every=1"]
    uri = f"file://{tmp_path}/bucket"
    proc = rlp("train", str(QUICKSTART), *sets(items), "--output", uri, "--address", ray_address)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "bucket" / "quickstart").iterdir()
    for name in ("config.yaml", "metrics.csv", "summary.json", "trial/result.json"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "monitor.csv").exists()  # metrics.csv is the run's one table
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["remote"] == f"{uri}/quickstart/{run_dir.name}"
    assert summary["best_checkpoint"].startswith(f"{uri}/quickstart/{run_dir.name}/trial/")
    for checkpoint in (run_dir / "trial").glob("checkpoint_*"):
        assert (checkpoint / "policies" / "manifest.json").is_file(), checkpoint

    # The copy a user syncs back evaluates like any run directory.
    report = tmp_path / "report"
    proc = rlp(
        "evaluate", str(run_dir), "--episodes", "2", "--workers", "0", "--report", str(report)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (report / "evaluation.json").is_file()


def test_a_sweep_refuses_a_storage_uri():
    sweep = ROOT / "experiments" / "sweeps" / "rendezvous_ppo_sweep.yaml"
    proc = rlp("tune", str(sweep), "--output", "s3://bucket/sweeps")
    assert proc.returncode == 2 and "filesystem path" in proc.stderr + proc.stdout
