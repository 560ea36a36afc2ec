"""algorithm.groups (one module per group) and env ids naming a user's MultiAgentEnv.

No Ray session: the mapping, its validation against the env's agents, the YAML's
errors, and the trust rules of ``<module>:<Class>`` ids.
"""

import pickle
import sys
import textwrap

import pytest

from rl_platform import registry
from rl_platform.config import ConfigError, load_experiment
from rl_platform.config.groups import (
    GroupError,
    ModuleMapping,
    agent_modules,
    modules_of,
    resolve_groups,
)
from rl_platform.trust import TRUSTED_MODULES_ENV, UntrustedModuleError

SPEAKER_LISTENER = "pettingzoo:mpe2.simple_speaker_listener_v4:parallel_env"
AGENTS = ["predator_0", "predator_1", "predator_2", "prey_0"]


def test_groups_map_ids_and_globs_to_one_module_per_group_in_the_envs_order():
    mapping = resolve_groups({"prey": ["prey_0"], "predators": ["predator_*"]}, AGENTS)
    assert mapping == {
        "predator_0": "predators",
        "predator_1": "predators",
        "predator_2": "predators",
        "prey_0": "prey",
    }
    assert list(mapping) == AGENTS


def test_shared_and_per_agent_stay_the_two_common_cases():
    assert set(agent_modules(AGENTS, True, None).values()) == {"shared"}
    assert agent_modules(AGENTS, False, None) == {a: a for a in AGENTS}
    # the section's dict dump (as checkpoints store it) reads the same as the model
    dump = {"id": "mappo", "shared_policy": False, "groups": {"all": ["*"]}}
    assert set(modules_of(dump, AGENTS).values()) == {"all"}


def test_an_agent_in_two_groups_is_named_with_both_groups():
    with pytest.raises(GroupError, match=r"prey_0 \(in a and b\)"):
        resolve_groups({"a": ["predator_*", "prey_0"], "b": ["prey_*"]}, AGENTS)


def test_an_agent_in_no_group_is_named():
    with pytest.raises(GroupError, match="agents in no group: prey_0"):
        resolve_groups({"predators": ["predator_*"]}, AGENTS)


def test_an_unknown_agent_id_is_named_with_close_matches():
    with pytest.raises(GroupError) as err:
        resolve_groups({"predators": ["predator_*"], "prey": ["pray_0"]}, AGENTS)
    message = str(err.value)
    assert "'pray_0' is not an agent of the env (did you mean prey_0" in message
    assert "agents in no group: prey_0" in message
    assert "The env's agents: predator_0, predator_1, predator_2, prey_0." in message


def test_a_pattern_matching_no_agent_is_refused():
    with pytest.raises(GroupError, match="the pattern 'wolf_\\*' matches no agent"):
        resolve_groups({"all": ["*"], "wolves": ["wolf_*"]}, AGENTS)


def test_the_policy_mapping_is_data_only_and_pickles():
    mapping = ModuleMapping({"speaker_0": "speaker", "listener_0": "listener"})
    copy = pickle.loads(pickle.dumps(mapping))
    assert copy == mapping
    assert copy("listener_0", None) == "listener"
    assert vars(copy) == {"mapping": {"speaker_0": "speaker", "listener_0": "listener"}}
    with pytest.raises(KeyError, match="'intruder' is in no group"):
        copy("intruder")


def experiment(groups, **algorithm):
    return {
        "name": "sl",
        "env": {"id": SPEAKER_LISTENER, "config": {"continuous_actions": False}},
        "algorithm": {"id": "mappo", "groups": groups, **algorithm},
    }


def test_the_yaml_takes_groups_and_records_them_as_not_shared():
    config = load_experiment(experiment({"speaker": ["speaker_0"], "listener": ["listener_*"]}))
    assert config.algorithm.shared_policy is False
    assert config.algorithm.groups == {"speaker": ["speaker_0"], "listener": ["listener_*"]}
    # a dump loads again (shared_policy: false beside groups is allowed)
    again = load_experiment(config.model_dump(mode="json"))
    assert again.algorithm == config.algorithm


def test_the_yaml_refuses_groups_with_shared_policy_true():
    with pytest.raises(ConfigError, match="groups and shared_policy: true contradict"):
        load_experiment(experiment({"all": ["*"]}, shared_policy=True))


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ({"speaker": ["speakr_0"], "listener": ["listener_0"]}, "did you mean speaker_0"),
        ({"a": ["*"], "b": ["listener_0"]}, r"listener_0 \(in a and b\)"),
        ({"listener": ["listener_0"]}, "agents in no group: speaker_0"),
        ({"__x": ["*"]}, "must start with a letter"),
        ({"a": []}, "non-empty list"),
        ({"all": ["*"]}, "different observation or action spaces"),
    ],
)
def test_the_yaml_refuses_groups_that_do_not_fit_the_agents(groups, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        load_experiment(experiment(groups))
    assert "\n" not in str(err.value)  # one paragraph


# --------------------------------------------------------------------------- own MultiAgentEnv

ENV_MODULE = textwrap.dedent(
    """
    import gymnasium as gym
    import numpy as np
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    class Line(MultiAgentEnv):
        def __init__(self, config=None):
            super().__init__()
            self.possible_agents = ["a", "b"]
            self.agents = list(self.possible_agents)
            box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
            self.observation_spaces = {x: box for x in self.possible_agents}
            self.action_spaces = {x: gym.spaces.Discrete(2) for x in self.possible_agents}
            self.config = dict(config or {})

        def reset(self, *, seed=None, options=None):
            return {x: np.zeros(2, np.float32) for x in self.agents}, {}

        def step(self, actions):
            obs = {x: np.full(2, 0.5, np.float32) for x in self.agents}
            rewards = {x: float(v) for x, v in actions.items()}
            return obs, rewards, {"__all__": False}, {"__all__": False}, {}

    class NotAnEnv:
        pass
    """
)


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    (tmp_path / "own_envs_u.py").write_text(ENV_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(TRUSTED_MODULES_ENV, "own_envs_u")
    yield "own_envs_u"
    sys.modules.pop("own_envs_u", None)


def test_an_untrusted_module_class_id_is_refused_before_import(monkeypatch):
    monkeypatch.delenv(TRUSTED_MODULES_ENV, raising=False)
    with pytest.raises(UntrustedModuleError, match="not trusted, so it was not imported"):
        registry.get_env("never_imported_envs:Thing")
    with pytest.raises(UntrustedModuleError, match="not of the form <module>:<Class>"):
        registry.get_env("my envs:Thing")
    assert "never_imported_envs" not in sys.modules


def test_a_trusted_multi_agent_env_gets_the_platforms_view(own_module):
    entry = registry.get_env(f"{own_module}:Line")
    env = entry.load()({**entry.bound_config, "width": 3})
    assert env.inner.config == {"width": 3}  # the rest of env.config reaches the class
    assert env.possible_agents == ["a", "b"]
    obs, _ = env.reset(seed=0)
    assert env.state().shape == (4,)  # no state(): the observations joined
    env.step({"a": 1, "b": 0})
    assert env.state().tolist() == [0.5] * 4
    with pytest.raises(ValueError, match="unknown agent"):
        env.step({"a": 1, "c": 0})
    with pytest.raises(ValueError, match="agent a: action nan is not finite"):
        env.step({"a": float("nan"), "b": 0})


def test_a_class_that_is_no_multi_agent_env_is_refused_at_load(own_module):
    spec = {"name": "x", "env": {"id": f"{own_module}:NotAnEnv"}, "algorithm": {"id": "mappo"}}
    with pytest.raises(ConfigError, match="not a subclass of ray.rllib.env.MultiAgentEnv"):
        load_experiment(spec)
    spec["env"]["id"] = f"{own_module}:Missing"
    with pytest.raises(ConfigError, match="has no attribute 'Missing'"):
        load_experiment(spec)
