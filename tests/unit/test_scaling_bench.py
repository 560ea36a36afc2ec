"""bench/scaling.py's arithmetic: RLlib's smoothed timers turned back into per-iteration
times, and the split of an iteration that docs/scaling.md's plan rests on."""

import math
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))
from scaling import EMA_COEFF, split_iteration, un_ema  # noqa: E402 (bench/ on the path)


def ema(values, coeff=EMA_COEFF):
    out = [values[0]]
    for value in values[1:]:
        out.append(coeff * value + (1 - coeff) * out[-1])
    return out


def test_un_ema_recovers_each_iteration_from_the_smoothed_series():
    times = [3.0, 0.5, 0.7, 0.4, 0.6]  # a slow warm-up, then the real iterations
    assert un_ema(ema(times)) == pytest.approx(times)
    assert ema(times)[-1] > 2.9  # what RLlib reports: still mostly the warm-up


def result(sample, learn, sync, total, params, learners=2):
    return {
        "timers": {
            "env_runner_sampling_timer": sample,
            "learner_update_timer": learn,
            "synch_weights": sync,
        },
        "time_this_iter_s": total,
        "learners": {"__all_modules__": {}, "shared": {"num_trainable_parameters": params}},
        "config": {
            "num_learners": learners,
            "_train_batch_size_per_learner": 1000,
            "minibatch_size": 500,
            "num_epochs": 2,
        },
    }


def series(learners):
    sample, learn, sync = ema([2.0, 0.3, 0.3]), ema([1.0, 0.2, 0.2]), ema([0.1, 0.01, 0.01])
    params = [16007.0, math.nan, math.nan]  # RLlib reports them on the first iteration only
    return [result(sample[i], learn[i], sync[i], 0.6, params[i], learners) for i in range(3)]


def test_an_iteration_splits_into_its_parts_and_the_driver_is_the_rest():
    parts = split_iteration(series(learners=2))
    assert parts["sample_s"] == pytest.approx(0.3, abs=1e-3)
    assert parts["learn_s"] == pytest.approx(0.2, abs=1e-3)
    assert parts["driver_s"] == pytest.approx(0.6 - 0.3 - 0.2 - 0.01, abs=1e-3)
    assert parts["trainable_parameters"] == 16007
    assert parts["updates_per_iteration"] == 4  # 1000 / 500 minibatches x 2 epochs
    assert parts["allreduce_bytes_per_update"] == 16007 * 4
    assert parts["allreduce_bytes_per_iteration"] == 16007 * 4 * 4


def test_one_learner_has_no_all_reduce():
    parts = split_iteration(series(learners=1))
    assert parts["allreduce_bytes_per_iteration"] == 0
    assert split_iteration(series(learners=1)[:1]) == {}  # one iteration: only a warm-up
