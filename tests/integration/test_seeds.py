"""`rlp train --seeds` on a local Ray: one Tune run of the seeds, the group directory, resume."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rl_platform.runs import AGGREGATE_KEYS

ROOT = Path(__file__).resolve().parents[2]
TWO_STEP = ROOT / "experiments" / "two_step_qmix.yaml"


def rlp_args(*args) -> list[str]:
    return [sys.executable, "-m", "rl_platform", *map(str, args)]


def rlp(*args, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(rlp_args(*args), capture_output=True, text=True, env=env, timeout=timeout)


def iterations(run_dir: Path) -> list[int]:
    with (run_dir / "metrics.csv").open() as handle:
        return [int(row["iteration"]) for row in csv.DictReader(handle)]


def rlp_here(*args):
    """`rlp ARGS` in this process (no interpreter start-up): exit code and output."""
    from typer.testing import CliRunner

    from rl_platform.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def only_group(output: Path) -> Path:
    (group,) = [p for p in (output / "two_step_qmix").iterdir() if p.is_dir()]
    return group


def test_seeds_train_as_one_run_into_a_group_of_run_directories(tmp_path, ray_address):
    output = tmp_path / "runs"
    proc = rlp(
        "train",
        TWO_STEP,
        "--seeds",
        "3,5",
        "--set",
        "stop.training_iteration=4",
        "--output",
        output,
        "--address",
        ray_address,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    group = only_group(output)
    # one progress row per seed and iteration, then the table and the group directory
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert {(r[0], r[1].split("/")[0]) for r in rows if len(r) >= 7} >= {
        (s, i) for s in ("3", "5") for i in ("1", "2", "3", "4")
    }
    assert "IQM" in proc.stdout and "95% CI" in proc.stdout
    assert f"group directory: {group}" in proc.stdout.replace("\n", "")

    assert sorted(p.name for p in group.glob("seed_*")) == ["seed_3", "seed_5"]
    assert json.loads((group / "seeds.json").read_text())["seeds"] == [3, 5]
    for seed in (3, 5):
        run_dir = group / f"seed_{seed}"
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == seed
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["iterations"] == 4
        assert iterations(run_dir) == [1, 2, 3, 4]
        assert (run_dir / "trial" / "result.json").is_file()
        last = Path(summary["last_checkpoint"])
        assert last.parent == run_dir / "trial" and (last / "policies").is_dir()

    data = json.loads((group / "aggregate.json").read_text())
    assert set(data) == AGGREGATE_KEYS
    assert (data["kind"], data["name"], data["algorithm"], data["env"], data["score"]) == (
        "seeds",
        "two_step_qmix",
        "qmix",
        "two_step_game",
        "greedy_return",
    )
    assert data["seeds"] == [3, 5] and data["runs"] == {"3": "seed_3", "5": "seed_5"}
    assert len(data["scores"]) == 2 and data["episodes"] == 100
    assert set(data["baselines"]) == {"safe", "optimal"}
    assert data["baselines"]["optimal"] == pytest.approx(8.0)
    assert data["iqm"]["low"] <= data["iqm"]["point"] <= data["iqm"]["high"]
    assert len(data["curve"]["env_steps"]) == len(data["curve"]["iqm"]) >= 2
    assert (group / "aggregate.png").stat().st_size > 0

    # a seed is a normal run directory: rlp evaluate scores it as the aggregate did
    seed_dir = group / "seed_5"
    code, out = rlp_here("evaluate", seed_dir, "--workers", "0", "--episodes", "100")
    assert code == 0, out[-3000:]
    (report,) = seed_dir.glob("evaluation/*/evaluation.json")
    figures = json.loads(report.read_text())
    assert figures["scores"]["policy"]["mean"] == pytest.approx(data["scores"][1])
    assert figures["scores"]["random"]["mean"] == pytest.approx(data["random"])
    code, out = rlp_here("monitor", seed_dir)
    assert code == 0, out[-3000:]

    code, out = rlp_here("train", "--resume", group, "--address", ray_address)
    assert code == 2 and "already finished" in out


@pytest.mark.slow
def test_a_killed_multi_seed_run_resumes_and_aggregates(tmp_path, ray_address):
    output = tmp_path / "runs"
    items = ["stop.training_iteration=25", "checkpoint.every=1", "checkpoint.keep=null"]
    args = ["train", TWO_STEP, "--seeds", "0-2", "--output", output, "--address", ray_address]
    args += [arg for item in items for arg in ("--set", item)]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        rlp_args(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            found = list((output / "two_step_qmix").glob("*/seed_*/metrics.csv"))
            if any(len(iterations(p.parent)) >= 4 for p in found):
                break
            time.sleep(0.2)
        time.sleep(2)  # longer than Tune's experiment-state period (1 s)
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    group = only_group(output)
    assert not (group / "aggregate.json").exists()
    done = [json.loads(p.read_text()) for p in group.glob("seed_*/summary.json")]
    assert not any(s.get("status") == "finished" for s in done), "the kill landed too late"

    resumed = rlp("train", "--resume", group, "--address", ray_address)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "IQM" in resumed.stdout
    data = json.loads((group / "aggregate.json").read_text())
    assert data["seeds"] == [0, 1, 2] and len(data["scores"]) == 3
    for seed in (0, 1, 2):
        run_dir = group / f"seed_{seed}"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["iterations"] == 25
        # each iteration once: the rows after the checkpoint a seed resumed from were dropped
        assert iterations(run_dir) == list(range(1, 26))
        results = (run_dir / "trial" / "result.json").read_text().splitlines()
        assert [json.loads(line)["training_iteration"] for line in results] == list(range(1, 26))
