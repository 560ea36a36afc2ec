"""Anomalies seen and acted on during `rlp train`; the safety shield in training and evaluation."""

import csv
import json

from quickstart_runs import QUICKSTART, TINY, only_run, rlp, sets


def test_an_anomaly_in_stop_on_stops_the_run_and_is_logged(tmp_path, ray_address):
    # A hair-trigger instability rule: returns vary between iterations, so it fires as
    # soon as `window` returns exist.
    items = [
        *TINY,
        "stop.training_iteration=30",
        "monitoring.window=3",
        "monitoring.instability_ratio=1.0e-9",
        "monitoring.stop_on=[instability]",
    ]
    output = tmp_path / "runs"
    proc = rlp(
        "train", str(QUICKSTART), *sets(items), "--output", str(output), "--address", ray_address
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "anomaly: " in proc.stdout and "stopped on an anomaly" in proc.stderr + proc.stdout
    run_dir = only_run(output)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped_on_anomaly"
    assert summary["iterations"] < 30
    lines = (run_dir / "anomalies.jsonl").read_text().splitlines()
    kinds = [json.loads(line)["kind"] for line in lines]
    assert "instability" in kinds

    # One table of our own: metrics.csv holds the monitor's figures (no monitor.csv).
    assert not (run_dir / "monitor.csv").exists()
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == list(range(1, summary["iterations"] + 1))
    for column in (
        "entropy/shared",
        "policy_loss/shared",
        "mean_kl_loss/shared",
        "actions/shared/mean_0",
        "actions/shared/std_0",
        "env_steps_per_s",
    ):
        assert rows[-1].get(column) not in (None, ""), column
    result = json.loads((run_dir / "trial" / "result.json").read_text().splitlines()[-1])
    sample = result["env_runners"]["actions"]["shared"]["sample_0"]  # TensorBoard histogram
    assert isinstance(sample, list) and len(sample) > 10

    # rlp monitor plots from metrics.csv (and marks anomalies.jsonl): Tune's files aside.
    (run_dir / "trial" / "result.json").rename(tmp_path / "result.json")
    monitor = rlp("monitor", str(run_dir))
    assert monitor.returncode == 0, monitor.stderr[-2000:]
    index = (run_dir / "monitor" / "index.html").read_text()
    assert "instability" in index and "figures from metrics.csv" in index
    for plot in ("returns", "losses", "exploration", "actions", "throughput"):
        assert (run_dir / "monitor" / f"{plot}.png").stat().st_size > 1000, plot


def test_the_shield_trains_and_evaluates(tmp_path, ray_address):
    items = [
        *TINY,
        "stop.training_iteration=2",
        "safety={constraints: [{name: max_position, limit: 0.3}], penalty: 0.05}",
    ]
    output = tmp_path / "runs"
    proc = rlp(
        "train", str(QUICKSTART), *sets(items), "--output", str(output), "--address", ray_address
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run_dir = only_run(output)
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    interventions = [float(r["reward_interventions"]) for r in rows if r["reward_interventions"]]
    assert interventions and max(interventions) > 0, rows
    assert float(rows[-1]["reward_safety"]) < 0

    report = tmp_path / "report"
    proc = rlp(
        "evaluate",
        str(run_dir),
        "--episodes",
        "4",
        "--workers",
        "0",
        "--shield",
        "--report",
        str(report),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "the shield replaced" in proc.stdout
    data = json.loads((report / "evaluation.json").read_text())
    policy = data["details"]["safety"]["policy"]
    assert policy["unresolved"] == 0
    assert 0.0 <= policy["intervention_rate"] <= 1.0
    assert data["details"]["safety"]["random"]["intervention_rate"] > 0
