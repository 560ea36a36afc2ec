"""Meta-learning pieces without Ray: outer updates, task sampling, optimizer reset, checks,
task switching on the meeting-point env."""

import numpy as np
import pytest
import torch

from rl_platform.advanced.meta import (
    TaskSampler,
    core_of,
    env_tasks,
    fomaml_update,
    outer_update,
    reptile_update,
    reset_optimizer_state,
    switch_env,
    switch_runner_env,
    task_overrides,
)
from rl_platform.config import ConfigError, load_experiment
from rl_platform.envs.meeting_point import MEETING_POINTS, MeetingPointEnv
from rl_platform.rewards import RewardEnv
from rl_platform.sampling import GlobalStateEnv

EXPERIMENT = {
    "name": "meta_unit",
    "env": {"id": "meeting_point", "config": {"num_agents": 3}},
    "algorithm": {"id": "ppo"},
    "meta": {"tasks": ["e", "ne", "nw"], "held_out": ["n"], "inner_iterations": 2},
    "stop": {"training_iteration": 10},
    "checkpoint": {"every": 4},
}


def weights(value: float, count: int = 3) -> dict:
    """A two-module state dict: float layers at `value` and an integer counter."""
    return {
        m: {"w": np.full((2, 2), value), "b": np.full(2, value), "n": np.array(count)}
        for m in ("shared", "other")
    }


def test_reptile_moves_theta_toward_the_adapted_weights():
    new = reptile_update(weights(1.0), weights(3.0, count=7), meta_lr=0.25)
    for module in new.values():
        np.testing.assert_allclose(module["w"], 1.5)  # 1 + 0.25 * (3 - 1)
        np.testing.assert_allclose(module["b"], 1.5)
        assert module["n"] == 7  # integer buffers are taken, not interpolated
    full = reptile_update(weights(1.0), weights(3.0), meta_lr=1.0)
    np.testing.assert_allclose(full["shared"]["w"], 3.0)  # meta_lr 1: sequential training


def test_fomaml_follows_only_the_last_inner_update():
    theta, before_last, adapted = weights(1.0), weights(5.0), weights(5.5)
    new = fomaml_update(theta, before_last, adapted, meta_lr=0.5)
    np.testing.assert_allclose(new["shared"]["w"], 1.25)  # 1 + 0.5 * (5.5 - 5)
    assert outer_update("fomaml", theta, adapted, 0.5, before_last)["other"]["b"][0] == 1.25
    with pytest.raises(ValueError, match="before the last"):
        outer_update("fomaml", theta, adapted, 0.5)


def test_updates_work_on_torch_tensors_and_refuse_mismatched_layers():
    theta = {"m": {"w": torch.zeros(3)}}
    new = reptile_update(theta, {"m": {"w": torch.ones(3)}}, 0.5)
    assert torch.equal(new["m"]["w"], torch.full((3,), 0.5))
    with pytest.raises(KeyError, match="w"):
        reptile_update(theta, {"m": {"v": torch.ones(3)}}, 0.5)


def test_task_sampling_is_seeded_resumable_and_never_yields_held_out_tasks():
    experiment = load_experiment(EXPERIMENT)
    draws = [TaskSampler(experiment.meta.tasks, 7) for _ in range(2)]
    first = [draws[0].next() for _ in range(200)]
    assert first == [draws[1].next() for _ in range(200)]
    assert set(first) == {"e", "ne", "nw"} and "n" not in first
    assert first != [TaskSampler(experiment.meta.tasks, 8).next() for _ in range(200)]
    sampler = TaskSampler(["e", "ne", "nw"], 3)
    [sampler.next() for _ in range(5)]
    resumed = TaskSampler(["e", "ne", "nw"], 0)
    resumed.load_state_dict(sampler.state_dict())
    assert [resumed.next() for _ in range(20)] == [sampler.next() for _ in range(20)]
    with pytest.raises(ValueError, match="differ"):
        TaskSampler(["e"], 0).load_state_dict(sampler.state_dict())


def test_optimizer_reset_forgets_adam_moments():
    class Learner:  # the two RLlib Learner methods the reset uses
        def __init__(self):
            self.net = torch.nn.Linear(2, 1)
            self.module = {"shared": self.net}
            self.optim = torch.optim.Adam(self.net.parameters(), lr=0.1)

        def get_optimizers_for_module(self, module_id):
            return [("default", self.optim)]

    learner = Learner()
    learner.net(torch.ones(4, 2)).sum().backward()
    learner.optim.step()
    assert learner.optim.state  # Adam keeps exp_avg, exp_avg_sq, step per parameter
    assert reset_optimizer_state(learner) == 1
    assert not learner.optim.state
    learner.optim.step()  # and it still steps afterwards (fresh moments)
    assert len(learner.optim.state) == 2


def test_tasks_are_levels_or_variants_with_their_overrides():
    tasks = env_tasks(MeetingPointEnv)
    assert tasks["n"] == "variant" and tasks["hard"] == "level" and len(tasks) == 21
    assert task_overrides(MeetingPointEnv, "hard") == {"task": "hard"}
    assert task_overrides(MeetingPointEnv, "sw") == {"meeting_point": MEETING_POINTS["sw"]}
    with pytest.raises(ValueError, match="no task 'up'"):
        task_overrides(MeetingPointEnv, "up")


def test_switching_a_variant_moves_the_meeting_point_through_wrappers():
    config = {"env_id": "meeting_point", "env_config": {}, "rewards": {}}
    for env in (MeetingPointEnv({}), RewardEnv(config), GlobalStateEnv(config)):
        env.reset(seed=0)
        switch_env(env, "sw", "variant")
        assert core_of(env).config.meeting_point == MEETING_POINTS["sw"]
        switch_env(env, "hard", "level")
        assert env.get_task() == "hard"


def test_switching_reaches_the_batched_sampler_core_and_vector_envs():
    from rl_platform.sampling import BatchedMultiAgentEnv

    config = {"env_id": "meeting_point", "env_config": {}, "rewards": {}, "agent_id": True}
    batched = BatchedMultiAgentEnv(GlobalStateEnv, config, num_envs=3)
    assert switch_runner_env(batched, "sw", "variant") == 1
    assert batched.core.config.meeting_point == MEETING_POINTS["sw"]

    class VectorEnv:  # what a stock env runner holds: .unwrapped.envs
        def __init__(self, envs):
            self.unwrapped, self.envs = self, envs

    envs = [RewardEnv(config) for _ in range(2)]
    assert switch_runner_env(VectorEnv(envs), "n", "variant") == 2
    assert all(core_of(e).config.meeting_point == MEETING_POINTS["n"] for e in envs)
    assert switch_runner_env(None, "n", "variant") == 0  # a local runner without env


def test_the_meeting_point_sets_the_goal_reward():
    env = MeetingPointEnv({"num_agents": 2, "meeting_point": (0.0, 0.0)})
    env.reset(seed=1)
    env.core._pos[:] = [[[0.3, 0.4], [0.3, 0.4]]]
    still = {a: np.zeros(2, dtype=np.float32) for a in env.possible_agents}
    _, _, _, _, infos = env.step(still)
    assert infos["agent_0"]["reward_components"]["goal"] == pytest.approx(-0.5)
    env.set_variant("e")  # (0.6, 0)
    _, _, _, _, infos = env.step(still)
    assert infos["agent_0"]["reward_components"]["goal"] == pytest.approx(-np.hypot(0.3, 0.4))
    with pytest.raises(ValueError, match="unknown task"):
        env.set_variant("up")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"meta": {"tasks": ["e", "up"]}}, r"meta: tasks\[1\] = 'up': the env has no task"),
        ({"meta": {"tasks": ["e", "n"], "held_out": ["n"]}}, "n in both tasks and held_out"),
        ({"meta": {"tasks": ["e", "e"]}}, "lists e more than once"),
        ({"meta": {"tasks": ["e", "hard"]}}, "mix task levels and variants"),
        ({"algorithm": {"id": "iql"}, "env": {"id": "meeting_point", "config": {"discrete": True}}},
         "algorithm 'iql' is not supported"),
        ({"curriculum": {"levels": ["easy", "hard"]}}, "meta and curriculum both switch"),
        ({"meta": {"tasks": ["e"], "method": "fomaml", "inner_iterations": 1},
          "checkpoint": {"every": 2}}, "fomaml needs inner_iterations >= 2"),
        ({"stop": {"training_iteration": 9}}, "multiple of inner_iterations"),
        ({"stop": {"training_iteration": 10, "env_steps": 1000}}, "training_iteration alone"),
        ({"checkpoint": {"every": 3}}, r"checkpoint.every \(3\) must be a multiple"),
        ({"evaluation": {"every": 2}}, "evaluation during meta-training"),
        ({"initial_policies": "/nonexistent/policies"}, "initial_policies: .*no policy export"),
    ],
)  # fmt: skip
def test_config_refusals_say_what_to_change(change, message):
    raw = {**EXPERIMENT, **change}
    if "meta" in change:
        raw["meta"] = {**EXPERIMENT["meta"], **change["meta"]}
    with pytest.raises(ConfigError, match=message):
        load_experiment(raw)


def test_a_valid_meta_section_loads():
    experiment = load_experiment(EXPERIMENT)
    assert experiment.meta.method == "reptile" and experiment.meta.held_out == ["n"]
    fomaml = load_experiment({**EXPERIMENT, "meta": {**EXPERIMENT["meta"], "method": "fomaml"}})
    assert fomaml.meta.method == "fomaml"


def test_rlp_adapt_refuses_bad_input_with_exit_2(tmp_path):
    from typer.testing import CliRunner

    from rl_platform.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["adapt", str(tmp_path / "nope"), "--task", "n"])
    assert missing.exit_code == 2 and "no such run directory" in missing.output
    (tmp_path / "config.yaml").write_text(load_experiment(EXPERIMENT).to_yaml())
    no_checkpoint = runner.invoke(app, ["adapt", str(tmp_path), "--task", "n"])
    assert no_checkpoint.exit_code == 2 and "no checkpoint yet" in no_checkpoint.output
    usage = runner.invoke(app, ["adapt", "--help"], env={"COLUMNS": "200"})
    assert usage.exit_code == 0 and "rlp adapt runs/meeting_point_meta" in usage.output


def test_initial_policies_load_weights_only_and_refuse_what_does_not_fit(tmp_path):
    from policy_exports import fresh_ppo_export

    from rl_platform.warm_start import check_initial_policies, load_weights, set_module_weights

    experiment = {**EXPERIMENT, "meta": None}
    root, module = fresh_ppo_export(tmp_path / "checkpoint_000000", experiment)
    check_initial_policies(root, "meeting_point")
    with pytest.raises(ValueError, match="trained on env 'meeting_point', not 'rendezvous'"):
        check_initial_policies(root, "rendezvous")
    weights = load_weights(root / "policies", ["shared"])
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(weights["shared"][name], value.numpy())
    with pytest.raises(ValueError, match="no weights for module"):
        load_weights(root, ["agent_0"])

    class LearnerGroup:  # what set_module_weights reads before it writes
        def get_weights(self, module_ids=None):
            return {"shared": {k: np.zeros((1,)) for k in weights["shared"]}}

    algorithm = type("Algorithm", (), {"learner_group": LearnerGroup()})()
    with pytest.raises(ValueError, match="has shape"):
        set_module_weights(algorithm, weights)
    # A loaded experiment points at the export.
    loaded = load_experiment({**experiment, "initial_policies": str(root)})
    assert loaded.initial_policies == str(root)
