"""Data-parallel learners without Ray: the DDP wrapper, synced statistics, the refusals."""

import socket
from contextlib import contextmanager

import gymnasium as gym
import pytest
import torch

from rl_platform import builder
from rl_platform.config import ConfigError, load_experiment


@contextmanager
def process_group():
    """A gloo process group of one process (what DDP needs, with no second learner)."""
    import torch.distributed as dist

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.fixture
def one_process_group():
    with process_group():
        yield


def actor_critic():
    from rl_platform.algorithms.mappo import ActorCriticModule

    obs = gym.spaces.Dict(
        {"obs": gym.spaces.Box(-1, 1, (3,)), "state": gym.spaces.Box(-1, 1, (5,))}
    )
    return ActorCriticModule(
        observation_space=obs,
        action_space=gym.spaces.Discrete(4),
        model_config={"actor_hiddens": [8], "critic_hiddens": [8]},
    )


def test_the_ddp_wrapper_keeps_the_value_function(one_process_group):
    # RLlib's TorchDDPRLModule hides ValueFunctionAPI, and its GAE connector then skips
    # the module (PPO's loss finds no value targets); ours keeps it.
    from ray.rllib.core.rl_module.apis import ValueFunctionAPI
    from ray.rllib.core.rl_module.torch.torch_rl_module import TorchDDPRLModule

    from rl_platform.algorithms.data_parallel import ddp_module

    module = actor_critic()
    wrapped = ddp_module(module)
    assert isinstance(wrapped, TorchDDPRLModule) and isinstance(wrapped, ValueFunctionAPI)
    assert wrapped.unwrapped() is module
    batch = {"obs": {"obs": torch.zeros(2, 3), "state": torch.ones(2, 5)}}
    torch.testing.assert_close(wrapped.compute_values(batch), module.compute_values(batch))
    assert not isinstance(TorchDDPRLModule(actor_critic()), ValueFunctionAPI), (
        "RLlib's DDP wrapper offers the value function now: ValueFunctionDDPModule can go"
    )


def test_ppo_learners_use_the_data_parallel_hook():
    # The hook RLlib's TorchLearner.build calls; if Ray renames it, ours is never called.
    from ray.rllib.core.learner.torch.torch_learner import TorchLearner

    from rl_platform.advanced.curiosity import CURIOUS_LEARNERS
    from rl_platform.algorithms.data_parallel import DataParallelLearnerMixin
    from rl_platform.algorithms.mappo import DataParallelPPOLearner, ValueNormPPOLearner

    assert callable(getattr(TorchLearner, "_make_modules_ddp_if_necessary", None))
    for learner in (DataParallelPPOLearner, ValueNormPPOLearner, *CURIOUS_LEARNERS.values()):
        assert issubclass(learner, DataParallelLearnerMixin), learner


def test_value_norm_statistics_are_the_same_with_a_process_group():
    from rl_platform.algorithms.mappo import ValueNorm

    values = torch.tensor([1.0, 2.0, 4.0, -3.0])
    alone, grouped = ValueNorm(beta=0.9), ValueNorm(beta=0.9)
    alone.update(values)  # no group: the local learner
    with process_group():
        grouped.update(values)
        grouped.update(values[:0])  # an empty shard changes nothing
    for a, b in zip(alone.mean_var(), grouped.mean_var(), strict=True):
        torch.testing.assert_close(a, b)
    assert float(alone.mean_var()[0]) == pytest.approx(1.0)


def test_num_cpus_per_learner_reaches_rllib():
    raw = {
        "name": "t",
        "env": {"id": "rendezvous"},
        "algorithm": {"id": "mappo"},
        "resources": {"num_learners": 2, "num_cpus_per_learner": 0.5},
        "stop": {"training_iteration": 1},
    }
    config = builder.build_algorithm_config(load_experiment(raw))
    assert config.num_learners == 2 and config.num_cpus_per_learner == 0.5
    bundles = config.algo_class.default_resource_request(config).bundles
    assert [b.get("CPU") for b in bundles[-2:]] == [0.5, 0.5]  # one per learner
    default = builder.build_algorithm_config(
        load_experiment({**raw, "resources": {"num_learners": 2}})
    )
    assert default.num_cpus_per_learner == "auto"


@pytest.mark.parametrize("algo", ["iql", "vdn", "qmix", "maddpg"])
def test_joint_replay_algorithms_refuse_data_parallel_learners_and_say_why(algo):
    raw = {
        "name": "t",
        "env": {"id": "two_step_game"} if algo != "maddpg" else {"id": "rendezvous"},
        "algorithm": {"id": algo},
        "resources": {"num_learners": 2},
        "stop": {"training_iteration": 1},
    }
    with pytest.raises(ConfigError) as info:
        builder.build_algorithm_config(load_experiment(raw))
    message = str(info.value)
    assert message.startswith("t: resources.num_learners = 2: ")
    assert "joint replay buffer in the algorithm's process" in message
    assert "slower than one learner" in message and "num_env_runners" in message
    one = builder.build_algorithm_config(load_experiment({**raw, "resources": {"num_learners": 1}}))
    assert one.num_learners == 1


def test_the_learners_cpus_are_set_under_resources_not_algorithm_rllib():
    raw = {
        "name": "t",
        "env": {"id": "rendezvous"},
        "algorithm": {"id": "mappo", "rllib": {"num_cpus_per_learner": 2}},
        "stop": {"training_iteration": 1},
    }
    with pytest.raises(ConfigError, match="resources.num_cpus_per_learner"):
        builder.build_algorithm_config(load_experiment(raw))
