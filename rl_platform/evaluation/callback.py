"""Evaluation during training: a light subset of the suite, for best-checkpoint selection.

Every ``evaluation.every`` iterations (and at the stop) the trained modules play
``evaluation.episodes`` greedy episodes on held-out env seeds at the current task level,
in the algorithm's process, through the same :func:`rollout.play` jobs, seed and
normalization (:func:`scoring.normalize_row`) as ``rlp evaluate``; random's and the
baselines' scores (the normalizer) are played on at least the suite's default episodes,
as ``rlp evaluate`` plays them. The result
gets ``evaluation/{score, score_low, score_high, normalized, normalized_low,
normalized_high, coordination, robustness, level, iteration}`` (95% Student-t intervals),
carried forward between evaluations so checkpoints can be ranked by them. Details:
docs/evaluation.md (Evaluation during training).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from rl_platform import registry
from rl_platform.config.groups import modules_of
from rl_platform.evaluation import scoring
from rl_platform.evaluation.baselines import RANDOM
from rl_platform.evaluation.policy import TrainedPolicy
from rl_platform.evaluation.rollout import POLICY, Job, Perturbation, make_core, play
from rl_platform.evaluation.statistics import t_interval
from rl_platform.evaluation.suite import JobContext, SuiteSettings, paired_job, run_job
from rl_platform.registry import env_config_of
from rl_platform.stopping import stop_reached

log = logging.getLogger(__name__)

RESULT_KEY = "evaluation"
OBS_NOISE = SuiteSettings.obs_noise  # the suite's default
SEED = SuiteSettings.seed  # the suite's default evaluation seed: the same held-out episodes
# Random's and the baselines' scores (the normalizer) on at least the suite's default
# episodes: on 10 episodes the best baseline's mean is too noisy to divide by
# (docs/evaluation.md: why the quickstart said 1.24 during training and 1.01 after).
REFERENCE_EPISODES = SuiteSettings.episodes
NOT_PLAYED = "not played during training (rlp evaluate plays it)"


class EvaluationCallback(RLlibCallback):
    """Scores the live policy every ``every`` iterations; see the module docstring.

    Subclasses made by :func:`callback_class` set ``spec``.
    """

    spec: dict[str, Any] = {}

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, Any] | None = None
        self._references: dict[str, dict[str, Any]] = {}  # level -> random/baseline figures

    def on_train_result(self, *, algorithm, result, **kwargs):  # noqa: D102
        iteration = int(result.get("training_iteration", algorithm.iteration + 1))
        spec = self.spec
        due = iteration % spec["every"] == 0
        if (
            due
            or self._last is None
            or stop_reached(spec["experiment"], {**result, "training_iteration": iteration})
        ):
            level = result.get("curriculum", {}).get("level_name") or spec["level"]
            try:
                self._last = {**self.measure(algorithm, level), "iteration": iteration}
            except Exception as err:  # noqa: BLE001 (an evaluation must not kill training)
                log.warning("evaluation at iteration %d failed: %s", iteration, err)
                if self._last is None:
                    return
        result[RESULT_KEY] = dict(self._last)

    def measure(self, algorithm: Any, level: str) -> dict[str, Any]:
        """The light subset at ``level`` for the algorithm's current modules."""
        spec = self.spec
        modules = {mid: algorithm.get_module(mid) for mid in set(spec["agents"].values())}
        policy = TrainedPolicy.from_modules(modules, spec["agents"])
        ref = self._reference(level)
        clean = self._play(policy, level, Perturbation())
        noisy = self._play(policy, level, Perturbation(obs_noise=OBS_NOISE), ref["obs_scale"])
        return figures(clean, noisy, ref["row"], self.spec["baselines"], level)

    def _play(self, policy: Any, level: str, pert: Perturbation, obs_scale=None):
        spec = self.spec
        core = make_core(spec["env_id"], spec["env_config"], level, spec["episodes"])
        job = self._job(POLICY, level, pert)
        return play(core, policy.actions, job, obs_scale, policy.reset)

    def _job(
        self, policy: str, level: str, pert: Perturbation = Perturbation(), episodes: int = 0
    ) -> Job:
        test = "clean" if pert == Perturbation() else "obs_noise"
        return paired_job(policy, test, level, episodes or self.spec["episodes"], SEED, pert)

    def _reference(self, level: str) -> dict[str, Any]:
        """Random's and each baseline's scores at ``level`` (cached), and the obs scale.

        Played on ``max(evaluation.episodes, REFERENCE_EPISODES)`` episodes: the same jobs
        as ``rlp evaluate``'s (default episodes and seed) references.
        """
        if level not in self._references:
            spec = self.spec
            context = JobContext(spec["env_id"], spec["env_config"], checkpoint="")
            episodes = max(spec["episodes"], REFERENCE_EPISODES)
            row = {}
            for name in (RANDOM, *spec["baselines"]):
                played = run_job(context, self._job(name, level, episodes=episodes))
                row[name] = {"mean": float(played.returns.mean())}
                if name == RANDOM:
                    obs_scale = played.obs_std.astype(np.float32)
            self._references[level] = {"row": row, "obs_scale": obs_scale}
        return self._references[level]


def figures(clean: Any, noisy: Any, row: dict, baselines: tuple[str, ...], level: str) -> dict:
    """The training-time figures from the policy's clean and noisy episodes at `level`.

    `row`: random's and each baseline's ``{"mean": ...}`` on the same episodes. Normalized
    through :func:`scoring.normalize_row` and robustness through :func:`scoring.robustness`,
    as in the suite; the intervals are Student-t intervals of the episodes' mean.
    """
    interval = t_interval(clean.returns)
    row = {name: dict(entry) for name, entry in row.items()}
    for key, value in (("", interval.point), ("_low", interval.low), ("_high", interval.high)):
        row[POLICY + key] = {"mean": value}
    scoring.normalize_row(row, baselines)
    low = row[RANDOM]["mean"]
    # no baseline (VMAS, PettingZoo): no normalized score; robustness keeps the share of
    # the policy's own lead over random play (as in rlp evaluate)
    lead = scoring.gap(row, baselines) if baselines else (low, interval.point)
    skipped = dict.fromkeys(scoring.ROBUSTNESS_TESTS[1:], NOT_PLAYED)
    no_gap = None if baselines else 0.0
    noisy_row = {(POLICY, "obs_noise"): noisy}
    kept = scoring.robustness(clean, noisy_row, POLICY, lead, skipped, no_gap)
    retained = kept["obs_noise"]["retained"]

    def number(value: float | None) -> float:
        return math.nan if value is None else float(value)

    return {
        "score": interval.point,
        "score_low": interval.low,
        "score_high": interval.high,
        "normalized": number(row[POLICY]["normalized"]),
        "normalized_low": number(row[POLICY + "_low"]["normalized"]),
        "normalized_high": number(row[POLICY + "_high"]["normalized"]),
        "coordination": clean.coordination.get("score", math.nan),
        "robustness": number(retained),
        "level": level,
    }


def core_reason(env_cls: type, env_config: dict[str, Any]) -> str | None:
    """Why the env's batched core cannot play this config, or None when it can.

    A view may declare ``batched_reason(env_config)`` (e.g. a PettingZoo env whose agents'
    spaces differ); the evaluation plays its episodes on the core.
    """
    if not hasattr(env_cls, "core_cls"):
        return None  # refused where the core is needed, with its own message
    reason = getattr(env_cls, "batched_reason", None)
    return reason(dict(env_config)) if reason is not None else None


def callback_class(experiment: Any) -> type[EvaluationCallback]:
    """An :class:`EvaluationCallback` bound to the experiment's evaluation settings."""
    entry = registry.get_env(experiment.env.id)
    env_cls = entry.load()
    env_config = env_config_of(experiment)
    agents = env_cls({**experiment.env.config, **entry.bound_config}).possible_agents
    levels = tuple(env_cls.core_cls.task_levels)  # its core's (a view may declare none)
    spec = {
        "experiment": experiment,
        "every": experiment.evaluation.every,
        "episodes": experiment.evaluation.episodes,
        "env_id": experiment.env.id,
        "env_config": env_config,
        "level": env_config.get("task", levels[0] if levels else ""),
        "baselines": tuple(env_cls.core_cls.baselines),
        "agents": modules_of(experiment.algorithm, agents),
    }
    return type("BoundEvaluationCallback", (EvaluationCallback,), {"spec": spec})


class EvaluationFeature(registry.Feature):
    """``evaluation.every`` > 0: the light suite during training.

    Its callback comes after the curriculum's (:data:`~rl_platform.registry.FEATURES`
    order): it reads the current level.
    """

    def validate(self, experiment: Any, env_cls: type) -> None:
        """Refuse ``evaluation.every`` where the env's batched core cannot run its config."""
        why = core_reason(env_cls, env_config_of(experiment))
        if experiment.evaluation.every > 0 and why is not None:
            raise ValueError(
                f"evaluation.every: env {experiment.env.id!r} cannot be evaluated during "
                f"training ({why}); set evaluation.every to 0"
            )

    def callbacks(self, experiment: Any) -> list[type]:  # noqa: D102
        return [callback_class(experiment)] if experiment.evaluation.every > 0 else []


FEATURE = EvaluationFeature()
