"""Hierarchical runs train end to end: meta-controllers over strategies (PPO, MAPPO) and
learned low-level policies, with the strategy shares in the results and a policy export
that rlp evaluate refuses with a clear message."""

from pathlib import Path

import pytest

from rl_platform.checkpoints import read_manifest
from rl_platform.config import load_experiment
from rl_platform.evaluation.suite import EvaluationError, resolve_target
from rl_platform.training import train

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "trading_hierarchical.yaml"
SMALL = {
    "env.config.episode_length": 50,
    "env.config.num_agents": 2,
    "algorithm.hyperparams.train_batch_size_per_learner": 200,
    "algorithm.hyperparams.minibatch_size": 100,
    "algorithm.hyperparams.num_epochs": 2,
    "stop.training_iteration": 2,
    "checkpoint.every": 2,
}
NAMES = ["aggressive", "conservative", "balanced", "contrarian", "momentum"]


def small(**overrides):
    return load_experiment(EXPERIMENT, {**SMALL, **overrides})


@pytest.mark.parametrize("algorithm", ["ppo", "mappo"])
def test_meta_controller_run_reports_strategy_shares_and_exports(tmp_path, ray_address, algorithm):
    result = train(small(**{"algorithm.id": algorithm}), output=tmp_path)
    assert result.status == "finished", result.error
    share = result.metrics["env_runners"]["strategy_share"]
    assert set(share) == set(NAMES)
    assert sum(share.values()) == pytest.approx(1.0)
    checkpoint = Path(result.last_checkpoint)
    manifest = read_manifest(checkpoint)
    assert manifest["hierarchy"]["every"] == 10
    module = manifest["modules"]["shared"]
    assert module["action_space"]["n"] == len(NAMES)
    with pytest.raises(EvaluationError, match="hierarchical run"):
        resolve_target(checkpoint)


def test_learned_low_level_trains_meta_and_base_modules(tmp_path, ray_address):
    experiment = small(**{"hierarchy.low_level": "learned", "algorithm.id": "ippo"})
    result = train(experiment, output=tmp_path)
    assert result.status == "finished", result.error
    runners = result.metrics["env_runners"]
    assert set(runners["module_episode_returns_mean"]) == {"meta", "shared"}
    assert set(runners["strategy_share"]) == set(NAMES)
    assert set(read_manifest(Path(result.last_checkpoint))["modules"]) == {"meta", "shared"}
