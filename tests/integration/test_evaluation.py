"""Evaluation during training ranks checkpoints; `rlp evaluate` reports on a trained run."""

import json
from pathlib import Path

import numpy as np
import pytest
from quickstart_runs import QUICKSTART, TINY, rlp

from rl_platform.training import train

EVALUATED = [
    *TINY,
    "stop.training_iteration=4",
    "checkpoint.every=2",
    "checkpoint.keep=null",
    "evaluation.every=2",
    "evaluation.episodes=4",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_address):
    output = tmp_path_factory.mktemp("runs")
    return train(QUICKSTART, EVALUATED, output=output, address=ray_address)


def results(run_dir: Path) -> list[dict]:
    lines = (run_dir / "trial" / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_evaluation_during_training_ranks_the_checkpoints(trained):
    assert trained.status == "finished"
    assert trained.metric == "evaluation/score"
    rows = results(trained.run_dir)
    # measured at the first iteration (so every result has it), then every 2 and at the stop
    assert [r["evaluation"]["iteration"] for r in rows] == [1, 2, 2, 4]
    for row in rows:
        assert np.isfinite(row["evaluation"]["score"])
        assert 0.0 <= row["evaluation"]["robustness"] <= 1.0
        assert row["evaluation"]["level"] == "easy"
    scores = {r["training_iteration"]: r["evaluation"]["score"] for r in rows}
    best = max((2, 4), key=lambda i: scores[i])
    assert trained.best_checkpoint.name == f"checkpoint_{best // 2 - 1:06d}"
    assert trained.best_metric == pytest.approx(scores[best])


def test_the_training_evaluation_is_the_suite_on_the_same_weights(trained):
    """The last evaluation in training is the suite's computation on the end checkpoint.

    The score and its t interval: the suite's clean job on evaluation.episodes (4) at the
    suite's seed; normalized by random's and the baselines' scores on the suite's
    default 100 episodes, the same jobs as `rlp evaluate`'s (docs/evaluation.md).
    """
    from rl_platform.evaluation import scoring
    from rl_platform.evaluation.baselines import RANDOM
    from rl_platform.evaluation.rollout import POLICY
    from rl_platform.evaluation.statistics import t_interval
    from rl_platform.evaluation.suite import JobContext, SuiteSettings, paired_job, run_job
    from rl_platform.evaluation.target import resolve_target

    last = results(trained.run_dir)[-1]["evaluation"]
    target = resolve_target(trained.last_checkpoint)
    context = JobContext(target.env_id, target.env_config, str(target.checkpoint))
    played = run_job(context, paired_job(POLICY, "clean", "easy", 4, seed=0))
    interval = t_interval(played.returns)
    assert interval.point == pytest.approx(last["score"], rel=1e-5)
    assert [interval.low, interval.high] == pytest.approx(
        [last["score_low"], last["score_high"]], rel=1e-5
    )
    episodes = SuiteSettings().episodes
    row = {
        name: {
            "mean": float(
                run_job(context, paired_job(name, "clean", "easy", episodes, 0)).returns.mean()
            )
        }
        for name in (RANDOM, *target.baselines)
    }
    row[POLICY] = {"mean": interval.point}
    scoring.normalize_row(row, target.baselines)
    assert row[POLICY]["normalized"] == pytest.approx(last["normalized"], rel=1e-5)


def test_rlp_evaluate_writes_the_report_of_a_trained_run(trained, ray_address, tmp_path):
    report = tmp_path / "report"
    proc = rlp(
        "evaluate",
        str(trained.run_dir),
        "--episodes",
        "8",
        "--report",
        str(report),
        "--address",
        ray_address,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "overall" in proc.stdout and "report.html" in proc.stdout
    data = json.loads((report / "evaluation.json").read_text())
    assert data["checkpoint"] == str(trained.best_checkpoint)
    assert data["policies"][0] == "policy" and data["policies"][-1] == "random"
    for dim in ("generalization", "robustness", "coordination"):
        assert data["dimensions"]["policy"][dim] is not None, dim
    # sample efficiency apart: the greedy scores of the two kept checkpoints (iterations 2, 4)
    efficiency = data["details"]["sample_efficiency"]
    assert data["sample_efficiency"]["measure"] == "auc"
    assert efficiency["curve"]["iteration"] == [2, 4]
    assert "sample_efficiency" not in data["dimensions"]["policy"]
    assert set(data["details"]["coordination"]["policy"]) >= {"score", "market_impact"}
    for plot in ("learning_curve", "dimensions", "reward_components", "actions", "trace"):
        assert (report / "plots" / f"{plot}.png").stat().st_size > 1000, plot
    html = (report / "report.html").read_text()
    assert "Sample efficiency" in html or "sample efficiency" in html.lower()

    # The same seed in this process (no Ray tasks) gives the same figures.
    from rl_platform.evaluation.suite import SuiteSettings, evaluate

    again = evaluate(trained.run_dir, SuiteSettings(episodes=8), report=tmp_path / "b", workers=0)
    first = {k: v for k, v in data.items() if k != "timing"}
    second = {k: v for k, v in again.result.items() if k != "timing"}
    assert first == json.loads(json.dumps(second))


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_id",
    ["vmas:navigation", "pettingzoo:mpe2.simple_spread_v3:parallel_env"],
    ids=["vmas", "pettingzoo"],
)
def test_an_env_from_another_library_trains_and_evaluates(env_id, ray_address, tmp_path):
    """One level, no baselines: scored against random play, the rest n/a with the reason."""
    pytest.importorskip("vmas" if env_id.startswith("vmas") else "mpe2")
    from rl_platform import registry

    if not hasattr(registry.get_env(env_id).load(), "core_cls"):
        pytest.skip(f"{env_id} has no batched core on this branch yet")
    config = {"max_steps": 25} if env_id.startswith("vmas") else {"max_cycles": 25}
    spec = {
        "name": "foreign",
        "env": {"id": env_id, "config": config},
        "algorithm": {
            "id": "mappo",
            "shared_policy": True,
            "hyperparams": {
                "train_batch_size_per_learner": 200,
                "minibatch_size": 100,
                "num_epochs": 1,
            },
        },
        "resources": {"num_envs_per_env_runner": 8},
        "stop": {"training_iteration": 2},
        "evaluation": {"every": 1, "episodes": 2},
    }
    result = train(spec, output=tmp_path / "runs", address=ray_address)
    assert result.status == "finished"
    last = results(result.run_dir)[-1]["evaluation"]
    assert np.isfinite(last["score"]) and last["level"] == "default"
    assert not np.isfinite(last["normalized"] or np.nan)  # no baseline: no normalized score

    report = tmp_path / "report"
    args = ("--episodes", "4", "--workers", "0", "--report", str(report))
    proc = rlp("evaluate", str(result.run_dir), *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "n/a on this env: adaptability" in proc.stdout
    data = json.loads((report / "evaluation.json").read_text())
    assert data["policies"] == ["policy", "random"]
    assert set(data["not_applicable"]) >= {"normalized", "generalization", "adaptability"}
    assert data["dimensions"]["policy"]["coordination"] is not None
    assert "n/a on this env" in (report / "report.html").read_text()
