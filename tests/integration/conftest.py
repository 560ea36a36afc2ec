from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray per test module; CLI runs join it with --address.

    Workers get this folder on their path so that test-only envs (flaky_env.py) import.
    """
    import ray

    ray.init(
        address="local",  # never join a cluster `ray start` left on this machine
        include_dashboard=False,
        num_cpus=4,  # logical: lets a test use 2 env runners and a remote learner
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}},
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def flaky_env():
    """A rendezvous env registered for the test that raises once (see flaky_env.py)."""
    from flaky_env import FlakyRendezvousEnv

    from rl_platform import registry

    registry.register_env(registry.EnvEntry("flaky_rendezvous", "test only", FlakyRendezvousEnv))
    yield "flaky_rendezvous"
    registry.ENVS.pop("flaky_rendezvous")


SWEEP_SPACE = {
    "algorithm.hyperparams.lr": {"loguniform": [1.0e-4, 1.0e-2]},
    "exploration": {"uniform": [0.0, 0.1]},
    "network": {"choice": [[16], [32, 32]]},
}


def make_tiny_sweep(
    name: str = "tiny_sweep",
    iterations: int = 2,
    search_space: dict | None = None,
    **tune_section,
) -> dict:
    """PPO on the two-step game with tiny batches: a trial iteration takes well under 1 s.

    4 trials, 2 at a time, ASHA halving, over lr, exploration and the network unless the
    ``tune_section`` keys (``num_samples=2, scheduler="none"``...) say otherwise.
    """
    return {
        "name": name,
        "seed": 0,
        "env": {"id": "two_step_game"},
        "algorithm": {
            "id": "ppo",
            "hyperparams": {
                "train_batch_size_per_learner": 200,
                "minibatch_size": 100,
                "num_epochs": 1,
            },
            "network": {"hidden_sizes": [16]},
        },
        "resources": {"num_env_runners": 0},
        "stop": {"training_iteration": iterations},
        "checkpoint": {"every": 1, "keep": 1},
        "tune": {
            "num_samples": 4,
            "max_concurrent_trials": 2,
            "reduction_factor": 2,
            "search_space": search_space or SWEEP_SPACE,
            **tune_section,
        },
    }


@pytest.fixture
def tiny_sweep():
    """The tiny sweep factory: ``tiny_sweep(name=..., iterations=..., **tune_section)``."""
    return make_tiny_sweep
