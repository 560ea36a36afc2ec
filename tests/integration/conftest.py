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
