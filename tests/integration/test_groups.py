"""Groups train, export and evaluate; a user's own MultiAgentEnv trains.

One Ray session for the module (this module's `ray_address`): its workers get the
folder of docs/custom-envs.md's example module on their path and trust it, as a
private Ray started by `rlp train --trust-module` would.
"""

import json
import re
from pathlib import Path

import pytest
from quickstart_runs import rlp

from rl_platform.training import train

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs" / "custom-envs.md"
BYO_MODULE = "my_envs"
TINY_MAPPO = {"train_batch_size_per_learner": 400, "minibatch_size": 200, "num_epochs": 1}


def docs_example(name: str) -> str:
    """The fenced block of the docs' "Bring your own MultiAgentEnv" section in `name`."""
    section = DOCS.read_text().split("## Bring your own MultiAgentEnv", 1)[1]
    return re.findall(rf"```{name}\n(.*?)```", section, re.S)[0]


@pytest.fixture(scope="module")
def byo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("byo")
    (folder / f"{BYO_MODULE}.py").write_text(docs_example("python"))
    return folder


@pytest.fixture(scope="module")
def ray_address(byo_dir):
    import os
    import sys

    import ray

    from rl_platform.trust import TRUSTED_MODULES_ENV

    old = os.environ.get(TRUSTED_MODULES_ENV)
    os.environ[TRUSTED_MODULES_ENV] = BYO_MODULE
    sys.path.insert(0, str(byo_dir))
    ray.init(
        address="local",
        include_dashboard=False,
        num_cpus=4,
        log_to_driver=False,
        runtime_env={
            "env_vars": {
                "PYTHONPATH": f"{HERE}{os.pathsep}{byo_dir}",
                TRUSTED_MODULES_ENV: BYO_MODULE,
            }
        },
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    sys.path.remove(str(byo_dir))
    sys.modules.pop(BYO_MODULE, None)
    if old is None:
        os.environ.pop(TRUSTED_MODULES_ENV, None)
    else:
        os.environ[TRUSTED_MODULES_ENV] = old


def manifest(result) -> dict:
    return json.loads((result.best_checkpoint / "policies" / "manifest.json").read_text())


@pytest.mark.slow
def test_speaker_and_listener_train_as_two_groups(tmp_path, ray_address):
    experiment = HERE.parents[1] / "experiments" / "speaker_listener_groups.yaml"
    overrides = {
        "stop": {"training_iteration": 2},
        "algorithm.hyperparams": TINY_MAPPO,
        "resources.num_envs_per_env_runner": 2,
        "checkpoint": {"every": 1, "keep": 1},
    }
    result = train(experiment, overrides, output=tmp_path, address=ray_address)
    assert result.status == "finished" and result.iterations == 2
    exported = manifest(result)
    assert exported["agents"] == {"speaker_0": "speaker", "listener_0": "listener"}
    assert set(exported["modules"]) == {"speaker", "listener"}


@pytest.mark.slow
def test_groups_on_the_batched_runner_are_evaluated_and_served(tmp_path, ray_address):
    """Three agents of one space in two groups: batched sampling, export, evaluate, serve."""
    import numpy as np

    from rl_platform.evaluation.policy import TrainedPolicy
    from rl_platform.serving.ab_test import CHAMPION
    from rl_platform.serving.app import plan
    from rl_platform.serving.service import PolicyService

    experiment = {
        "name": "spread_groups",
        "env": {"id": "pettingzoo:mpe2.simple_spread_v3:parallel_env", "config": {"N": 3}},
        "algorithm": {
            "id": "mappo",
            "groups": {"lead": ["agent_0"], "rest": ["agent_[12]"]},
            "hyperparams": TINY_MAPPO,
        },
        "resources": {"num_env_runners": 1, "num_envs_per_env_runner": 4, "sampler": "batched"},
        "stop": {"training_iteration": 1},
        "checkpoint": {"every": 1, "keep": 1},
    }
    result = train(experiment, output=tmp_path, address=ray_address)
    assert result.status == "finished"
    assert manifest(result)["agents"] == {"agent_0": "lead", "agent_1": "rest", "agent_2": "rest"}
    report = tmp_path / "report"
    proc = rlp(
        "evaluate",
        str(result.run_dir),
        "--episodes",
        "4",
        "--report",
        str(report),
        "--address",
        ray_address,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((report / "evaluation.json").read_text())
    assert data["policies"][0] == "policy"
    assert (report / "report.html").is_file()

    service = PolicyService(plan(result.best_checkpoint))
    obs = np.random.default_rng(0).uniform(-1, 1, (4, 3, service.obs_dim)).astype(np.float32)
    present = np.ones(3, dtype=bool)
    decisions = service.act([(CHAMPION, obs[b], present) for b in range(4)])
    policy = TrainedPolicy(result.best_checkpoint)
    assert set(policy.modules) == {"lead", "rest"}
    served = np.stack([d.actions for d in decisions])
    np.testing.assert_array_equal(served, policy.actions(obs))


@pytest.mark.slow
def test_the_docs_own_multi_agent_env_trains_on_a_remote_runner(tmp_path, ray_address, byo_dir):
    import yaml

    experiment = yaml.safe_load(docs_example("yaml"))
    assert experiment["env"]["id"] == f"{BYO_MODULE}:GatherEnv"
    assert experiment["resources"]["num_env_runners"] == 1  # built in a worker process
    result = train(experiment, output=tmp_path, address=ray_address)
    assert result.status == "finished" and result.iterations == 2
    assert result.env_steps >= 800
    assert manifest(result)["agents"] == {f"walker_{i}": "shared" for i in range(3)}
