"""Serving a recurrent policy: one state per session, without Ray or HTTP."""

import numpy as np
import pytest
import torch

from rl_platform.serving.service import RequestError, SessionStates

AGENTS = ("agent_0", "agent_1")


def recurrent_export(root):
    """A checkpoint of one fresh recurrent MAPPO module for memory_cue (shared policy)."""
    from rl_platform.algorithms.recurrent_ac import RecurrentActorCriticModule
    from rl_platform.builder import build_algorithm_config
    from rl_platform.checkpoints import export_policies
    from rl_platform.config import load_experiment
    from rl_platform.sampling import GlobalStateEnv

    experiment = load_experiment(
        {
            "name": "sessions",
            "seed": 0,
            "env": {"id": "memory_cue"},
            "algorithm": {
                "id": "mappo",
                "hyperparams": {"recurrent": True, "chunk_length": 4},
                "network": {"hidden_sizes": [16]},
            },
            "resources": {"num_env_runners": 0, "sampler": "stock"},
            "stop": {"training_iteration": 1},
        }
    )
    config = build_algorithm_config(experiment)
    env = GlobalStateEnv(dict(config.env_config))
    torch.manual_seed(0)
    module = RecurrentActorCriticModule(
        observation_space=env.observation_spaces[AGENTS[0]],
        action_space=env.action_spaces[AGENTS[0]],
        inference_only=False,
        model_config=config.rl_module_spec.model_config,
    )
    module.save_to_path(str(root / "learner_group" / "learner" / "rl_module" / "shared"))
    export_policies(root, experiment.model_dump(mode="json"))
    return root


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return recurrent_export(tmp_path_factory.mktemp("run") / "checkpoint_000000")


@pytest.fixture
def service(export):
    from rl_platform.serving.arms import ServerConfig, resolve_arm
    from rl_platform.serving.service import PolicyService

    return PolicyService(ServerConfig(champion=resolve_arm(export), batching=False))


def request(obs, session=None, reset=False):
    from rl_platform.serving.schemas import ActRequest

    body = {"observations": {a: o.tolist() for a, o in obs.items()}, "reset": reset}
    if session is not None:
        body["session_id"] = session
    return ActRequest.model_validate(body)


def serve(service, obs, session, reset=False):
    """One request through the service as a replica handles it; the actions (N,)."""
    req = request(obs, session, reset)
    service.check_session(req)
    if req.reset:
        service.end_session("champion", session)
    row, present = service.parse(req)
    return service.act([("champion", row, present, None, session)])[0].actions


def episode(seed, steps=5):
    rng = np.random.default_rng(seed)
    return [{a: rng.random(4).astype(np.float32) for a in AGENTS} for _ in range(steps)]


def test_a_recurrent_policy_needs_a_session(service):
    assert service.info()["sessions"]["recurrent"] is True
    with pytest.raises(RequestError) as err:
        service.check_session(request(episode(0)[0]))
    assert err.value.errors[0]["type"] == "session_required"


def test_interleaved_sessions_each_carry_their_own_state(service, export):
    """Two sessions served alternately act as two episodes played one after the other."""
    from rl_platform.evaluation.policy import TrainedPolicy

    steps = {"a": episode(1), "b": episode(2)}
    served = {"a": [], "b": []}
    for t in range(5):
        for session in ("a", "b"):
            served[session].append(serve(service, steps[session][t], session))
    reference = TrainedPolicy(export)
    for session in ("a", "b"):
        reference.reset()
        for t, obs in enumerate(steps[session]):
            expected = reference.actions(np.stack([obs[a] for a in AGENTS])[None])[0]
            np.testing.assert_array_equal(served[session][t], expected)
        kept = service.sessions["champion"]._states[session]
        for agent in AGENTS:
            for key, value in kept[agent].items():
                torch.testing.assert_close(value, reference._states[agent][key])


def test_reset_starts_the_session_afresh_and_absent_agents_keep_their_state(service):
    first = episode(3)
    start = serve(service, first[0], "s")
    serve(service, first[1], "s")
    states = service.sessions["champion"]._states["s"]
    before = {k: v.clone() for k, v in states["agent_1"].items()}
    serve(service, {"agent_0": first[2]["agent_0"]}, "s")  # agent_1 not observed
    after = service.sessions["champion"]._states["s"]["agent_1"]
    for key, value in before.items():
        torch.testing.assert_close(after[key], value)
    np.testing.assert_array_equal(serve(service, first[0], "s", reset=True), start)


def test_the_least_recently_used_session_is_forgotten(service):
    sessions = SessionStates(service.policies["champion"], limit=2)
    for name in ("x", "y", "z"):
        states = sessions.gather([name])
        sessions.scatter([name], states, np.ones((1, 2), bool))
    assert len(sessions) == 2 and "x" not in sessions._states
