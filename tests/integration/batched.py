"""Train on the batched runner and check that it ran there (no fallback)."""

import logging

import numpy as np

from rl_platform.training import train


def train_on_batched_runner(config, output, caplog, copies, iterations=2) -> dict:
    """Train `config`; assert the batched runner ran it to the end; its env-runner metrics."""
    with caplog.at_level(logging.INFO, logger="rl_platform.builder"):
        result = train(config, output=output)
    assert "sampler: stock" not in caplog.text
    assert f"sampler: batched ({copies} env copies per runner)" in caplog.text
    assert result.status == "finished" and result.iterations == iterations
    runners = result.metrics["env_runners"]
    assert np.isfinite(runners["episode_return_mean"])
    return runners
