"""Curiosity trains through `rlp train`'s path: metrics, exports without the ICM, evaluation."""

import csv
import json

import numpy as np
import pytest
from quickstart_runs import rlp

from rl_platform.training import train

CURIOSITY_COLUMNS = {
    "curiosity_intrinsic_reward",
    "curiosity_intrinsic_reward_weighted",
    "curiosity_extrinsic_reward",
    "curiosity_forward_loss",
    "curiosity_inverse_loss",
}


def experiment(algorithm: str, shared: bool, discrete: bool) -> dict:
    return {
        "name": f"curious_{algorithm}",
        "env": {
            "id": "landmark",
            "config": {
                "grid_size": 5,
                "episode_length": 20,
                "task": "medium",
                "discrete": discrete,
            },
        },
        "algorithm": {
            "id": algorithm,
            "shared_policy": shared,
            "hyperparams": {"train_batch_size_per_learner": 400, "minibatch_size": 200},
        },
        "curiosity": {"weight": 0.01, "feature_dim": 8, "hidden_sizes": [16]},
        "resources": {"num_env_runners": 0, "num_envs_per_env_runner": 4},
        "stop": {"training_iteration": 2},
        "checkpoint": {"every": 1, "keep": 1},
    }


@pytest.fixture(scope="module")
def ippo_run(tmp_path_factory, ray_address):
    output = tmp_path_factory.mktemp("runs")
    return train(experiment("ippo", shared=True, discrete=True), output=output, address=ray_address)


@pytest.mark.slow
def test_metrics_csv_logs_intrinsic_and_extrinsic_rewards(ippo_run):
    assert ippo_run.status == "finished" and ippo_run.iterations == 2
    with (ippo_run.run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and CURIOSITY_COLUMNS <= set(rows[0])
    for row in rows:
        figures = {name: float(row[name]) for name in CURIOSITY_COLUMNS}
        assert all(np.isfinite(v) for v in figures.values()), figures
        assert figures["curiosity_intrinsic_reward"] > 0
        assert figures["curiosity_intrinsic_reward_weighted"] > 0
        assert 0.0 <= figures["curiosity_extrinsic_reward"] <= 1.0
    result = json.loads((ippo_run.run_dir / "trial" / "result.json").read_text().splitlines()[-1])
    assert set(result["curiosity"]) >= {"intrinsic_reward", "extrinsic_reward"}
    assert {"forward_loss", "inverse_loss"} <= set(result["learners"]["icm_shared"])


@pytest.mark.slow
def test_policies_are_exported_without_the_icm_and_evaluate(ippo_run, ray_address, tmp_path):
    checkpoint = ippo_run.best_checkpoint
    trained = sorted(p.name for p in (checkpoint / "learner_group/learner/rl_module").iterdir())
    assert "icm_shared" in trained
    export = checkpoint / "policies"
    assert sorted(p.stem for p in export.glob("*.pt")) == ["shared"]
    assert set(json.loads((export / "manifest.json").read_text())["modules"]) == {"shared"}
    report = tmp_path / "report"
    proc = rlp(
        "evaluate", str(ippo_run.run_dir), "--episodes", "4", "--report", str(report),
        "--address", ray_address,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((report / "evaluation.json").read_text())["policies"][0] == "policy"


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["ppo", "mappo"])
def test_per_agent_icms_with_box_actions(tmp_path, ray_address, algorithm):
    result = train(
        experiment(algorithm, shared=False, discrete=False), output=tmp_path, address=ray_address
    )
    assert result.status == "finished"
    learners = json.loads((result.run_dir / "trial" / "result.json").read_text().splitlines()[-1])[
        "learners"
    ]
    assert {"icm_agent_0", "icm_agent_1"} <= set(learners)
    assert np.isfinite(learners["icm_agent_0"]["inverse_loss"])
    exported = sorted(p.stem for p in (result.best_checkpoint / "policies").glob("*.pt"))
    assert exported == ["agent_0", "agent_1"]
