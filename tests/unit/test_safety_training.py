"""The safety shield inside training (RewardEnv), in the experiment YAML and in evaluation."""

import numpy as np
import pytest

from rl_platform.config import ConfigError, load_experiment
from rl_platform.rewards import EPISODE_INFO, INTERVENTIONS, SAFETY, RewardEnv, reward_parts
from rl_platform.safety import SafetySpec, Shield

SAFETY_SPEC = {"constraints": [{"name": "max_position", "limit": 0.3}], "penalty": 0.05}


def test_reward_env_shields_every_action_and_charges_the_penalty():
    env = RewardEnv(
        {
            "env_id": "trading",
            "env_config": {"num_agents": 3, "episode_length": 50},
            "rewards": {},
            "safety": SAFETY_SPEC,
        }
    )
    checker = Shield(env.inner.core, SafetySpec.model_validate(SAFETY_SPEC), max_entries=0)
    plain = RewardEnv(
        {"env_id": "trading", "env_config": {"num_agents": 3, "episode_length": 50}, "rewards": {}}
    )
    rng = np.random.default_rng(0)
    env.reset(seed=1)
    plain.reset(seed=1)
    done, steps, hits = False, 0, 0
    while not done:
        actions = {
            a: rng.uniform(-1, 1, size=env.action_spaces[a].shape).astype(np.float32)
            for a in env.possible_agents
        }
        before = checker.violations(np.stack([actions[a] for a in env.possible_agents])[None])
        hits += int(before.any(axis=-1).sum())
        obs, rewards, terms, truncs, infos = env.step(actions)
        steps += 1
        done = truncs["__all__"] or terms["__all__"]
    assert hits > 0, "random targets should break a 0.3 position limit"
    summary = infos["agent_0"][EPISODE_INFO]
    assert summary[INTERVENTIONS] > 0
    assert summary[SAFETY] == pytest.approx(-0.05 * summary[INTERVENTIONS])
    assert summary["total"] == pytest.approx(summary["env"] + summary[SAFETY])
    # every position the env ends up in honours the limit
    assert np.all(np.abs(env.inner.core.trace()["position"]) <= 0.3 + 1e-6)


def test_the_safety_section_is_validated_against_the_env(quickstart_path):
    experiment = load_experiment(quickstart_path, [f"safety={SAFETY_SPEC}"])
    assert experiment.safety.constraints[0].limit == 0.3
    assert reward_parts(experiment)[-3:] == [SAFETY, INTERVENTIONS, "total"]
    with pytest.raises(ConfigError, match="unknown constraint 'max_speed'"):
        load_experiment(quickstart_path, ["safety={constraints: [{name: max_speed, limit: 1}]}"])
    with pytest.raises(ConfigError, match="fallback"):
        load_experiment(
            quickstart_path,
            ["safety={constraints: [{name: max_position, limit: 1}], fallback: nobody}"],
        )
    with pytest.raises(ConfigError, match="penalty"):
        load_experiment(
            quickstart_path,
            ["safety={constraints: [{name: max_position, limit: 1}], penalty: -1}"],
        )
