"""The tanh-normal action distribution and the vectorized GAE, without Ray."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

from rl_platform.algorithms.advantages import gae_value_targets
from rl_platform.algorithms.mappo import ActorCriticModule
from rl_platform.algorithms.tanh_normal import tanh_normal_for

BOX = gym.spaces.Box(np.array([0.0, -2.0], np.float32), np.array([4.0, 2.0], np.float32))


def test_samples_fill_the_box_and_log_probs_match_torchs_transformed_normal():
    cls = tanh_normal_for(BOX)
    logits = torch.randn(4096, 4)
    dist = cls.from_logits(logits)
    actions, logp = dist.sample_and_logp()
    low, high = torch.as_tensor(BOX.low), torch.as_tensor(BOX.high)
    assert ((actions >= low) & (actions <= high)).all()
    reference = TransformedDistribution(
        Normal(dist.loc, dist.scale),
        [TanhTransform(), AffineTransform(loc=(low + high) / 2, scale=(high - low) / 2)],
    )
    inside = ((actions - (low + high) / 2).abs() < 0.999 * (high - low) / 2).all(-1)
    expected = reference.log_prob(actions).sum(-1)
    torch.testing.assert_close(logp[inside], expected[inside], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(dist.logp(actions)[inside], logp[inside], atol=1e-3, rtol=1e-4)


def test_a_zero_input_gives_scale_one_and_greedy_is_the_squashed_location():
    cls = tanh_normal_for(BOX)
    dist = cls.from_logits(torch.tensor([[0.5, -30.0, 0.0, 0.0]]))
    torch.testing.assert_close(dist.scale, torch.ones(1, 2))
    greedy = dist.to_deterministic().sample()
    torch.testing.assert_close(greedy, torch.tensor([[2.0 + 2.0 * float(np.tanh(0.5)), -2.0]]))
    assert tanh_normal_for(BOX) is cls  # one class per Box, importable by name
    assert getattr(__import__(cls.__module__, fromlist=["x"]), cls.__name__) is cls


def test_kl_is_the_gaussians_and_an_unbounded_box_is_refused():
    cls = tanh_normal_for(BOX)
    a, b = cls.from_logits(torch.randn(8, 4)), cls.from_logits(torch.randn(8, 4))
    assert (a.kl(b) >= 0).all() and torch.allclose(a.kl(a), torch.zeros(8), atol=1e-6)
    with pytest.raises(ValueError, match="bounded"):
        tanh_normal_for(gym.spaces.Box(-np.inf, np.inf, (2,), np.float32))


def test_mappo_module_with_a_tanh_normal_outputs_location_and_scale_per_dimension():
    obs = gym.spaces.Dict(
        {"obs": gym.spaces.Box(-1, 1, (4,)), "state": gym.spaces.Box(-1, 1, (6,))}
    )
    module = ActorCriticModule(
        observation_space=obs,
        action_space=BOX,
        inference_only=True,
        model_config={
            "actor_hiddens": [16],
            "action_distribution": "tanh_normal",
            "free_log_std": False,
        },
    )
    out = module.forward_exploration({Columns.OBS: {"obs": torch.randn(7, 4)}})
    inputs = out[Columns.ACTION_DIST_INPUTS]
    assert inputs.shape == (7, 4)
    dist_cls = module.get_exploration_action_dist_cls()
    assert dist_cls is tanh_normal_for(BOX)
    actions = dist_cls.from_logits(inputs).sample()
    assert BOX.contains(actions[0].numpy())


def test_vectorized_gae_equals_rllibs_loop():
    rng = np.random.default_rng(0)
    lens = [int(n) for n in rng.integers(1, 40, size=60)]
    total = sum(lens)
    values = rng.normal(size=total).astype(np.float32)
    rewards = rng.normal(size=total).astype(np.float32)
    terminateds = np.zeros(total, np.float32)
    truncateds = np.zeros(total, np.float32)
    for end in np.cumsum(lens) - 1:  # every episode ends terminated or truncated
        (terminateds if rng.random() < 0.4 else truncateds)[end] = 1.0
    expected = compute_value_targets(values, rewards, terminateds, truncateds, 0.99, 0.9)
    got = gae_value_targets(values, rewards, terminateds, truncateds, lens, 0.99, 0.9)
    np.testing.assert_allclose(got, expected, atol=1e-5)
