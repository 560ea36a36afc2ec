"""One step of a batched runner's episode checked against its env stepped by hand."""

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns


def check_step(episode, t, obs, env, module):
    """Step `t` of `episode` equals `env` from `obs`: observations, states, log-probs,
    rewards and the episode's end. Returns what ``env.step`` returned."""
    agents = list(episode.agent_episodes)
    for agent in agents:
        seen = episode.agent_episodes[agent].get_observations(t)
        np.testing.assert_allclose(seen["obs"], obs[agent]["obs"], rtol=1e-6)
        np.testing.assert_allclose(seen["state"], obs[agent]["state"], rtol=1e-6)
    actions = {a: episode.agent_episodes[a].get_actions(t) for a in agents}
    batch = {Columns.OBS: {
        k: torch.as_tensor(np.stack([obs[a][k] for a in agents])) for k in ("obs", "state")
    }}  # fmt: skip
    logits = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
    dist = module.get_exploration_action_dist_cls().from_logits(logits)
    logp = dist.logp(torch.as_tensor(np.stack([actions[a] for a in agents]))).numpy()
    stored = [episode.agent_episodes[a].get_extra_model_outputs(Columns.ACTION_LOGP, t)
              for a in agents]  # fmt: skip
    np.testing.assert_allclose(stored, logp, rtol=1e-4, atol=1e-5)
    result = env.step(actions)  # MAPPO acts in the env's units
    _, rewards, terms, truncs, _ = result
    for agent in agents:
        got = episode.agent_episodes[agent].get_rewards(t)
        assert got == pytest.approx(rewards[agent], rel=1e-5, abs=1e-6)
    ended = terms["__all__"] or truncs["__all__"]
    assert ended == (episode.is_done and t == len(episode) - 1)
    return result
