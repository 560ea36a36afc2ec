"""The evaluation suite: a checkpoint scored on five dimensions, next to baselines and random.

Sample efficiency, generalization, robustness, coordination and adaptability, each a
measured quantity in [0, 1] (:data:`~rl_platform.evaluation.scoring.DEFINITIONS`), for the
trained policy, each of the env's heuristic baselines and a uniformly random policy,
from greedy episodes on held-out env seeds; what an env cannot support (one task level,
no baselines) is n/a with its reason (:func:`scoring.not_applicable`). Episodes run on
the env's batched core in :mod:`rollout` jobs, as Ray tasks or in this process
(``workers=0``); the same seed gives the same figures. What each dimension measures:
docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rl_platform.checkpoints import PolicyExportError, read_manifest
from rl_platform.config import SafetySpec
from rl_platform.evaluation import scoring
from rl_platform.evaluation.baselines import RANDOM, random_actions
from rl_platform.evaluation.policy import TrainedPolicy
from rl_platform.evaluation.rollout import (
    FAULTY,
    POLICY,
    Job,
    Perturbation,
    PlayedEpisodes,
    make_core,
    play,
    seeded_job,
    stable_seed,
)
from rl_platform.evaluation.target import EvaluationError, Target, locate, resolve_target
from rl_platform.evaluation.versus import versus_markdown, versus_random
from rl_platform.ray_session import init_ray, quiet_logs, shutdown_ray
from rl_platform.safety import Shield

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SuiteSettings:
    """How much and how hard to evaluate."""

    episodes: int = 100
    seed: int = 0
    obs_noise: float = 0.2
    action_noise: float = 0.1
    baselines: bool = True  # run the whole suite for the baselines too (else: scores only)
    shield: bool = False  # every policy's actions pass the run's safety shield


# --------------------------------------------------------------------------- jobs

_POLICIES: dict[str, Any] = {}  # checkpoint path -> TrainedPolicy, per worker process


@dataclass(frozen=True)
class JobContext:
    """What every job of one evaluation shares."""

    env_id: str
    env_config: dict[str, Any]
    checkpoint: str
    obs_scale: np.ndarray | None = None
    safety: dict[str, Any] | None = None  # a SafetySpec as a dict: check (and shield) actions


def run_job(context: JobContext, job: Job) -> PlayedEpisodes:
    """Play one job's episodes (in a Ray worker or here)."""
    core = make_core(context.env_id, context.env_config, job.level, job.episodes)
    reset = None
    if job.policy == POLICY:
        policy = _POLICIES.get(context.checkpoint)
        if policy is None:
            policy = _POLICIES[context.checkpoint] = TrainedPolicy(context.checkpoint)
        act, reset = policy.actions, policy.reset
    elif job.policy == RANDOM:
        rng = np.random.default_rng(stable_seed(job.noise_seed, RANDOM))
        lead = (core.batch_size, core.num_agents)

        def act(obs: np.ndarray) -> np.ndarray:
            return random_actions(core.action_space, lead, rng)
    else:

        def act(obs: np.ndarray) -> np.ndarray:
            return core.baseline_actions(job.policy, obs)

    shield = None
    if context.safety is not None:
        shield = Shield(core, SafetySpec.model_validate(context.safety), max_entries=0)
    return play(core, act, job, context.obs_scale, reset, shield)


def _has_default_action(target: Target) -> bool:
    """Whether the env's core has a do-nothing action (the faulty-agent test needs one)."""
    core = make_core(target.env_id, target.env_config, target.level, 1)
    try:
        core.default_action()
    except NotImplementedError:
        return False
    return True


def _run_all(context: JobContext, jobs: list[Job], workers: int) -> list[PlayedEpisodes]:
    if workers == 0:
        return [run_job(context, job) for job in jobs]
    import ray

    remote = ray.remote(num_cpus=1, max_retries=1)(run_job)
    shared = ray.put(context)
    return ray.get([remote.remote(shared, job) for job in jobs])


# --------------------------------------------------------------------------- suite


def evaluate_target(target: Target, settings: SuiteSettings, workers: int = 0) -> dict[str, Any]:
    """Run the whole suite on a resolved target; returns the JSON-ready result.

    Args:
        target: from :func:`~rl_platform.evaluation.target.resolve_target`.
        settings: episodes, seed, perturbation strengths.
        workers: 0 plays every job in this process; otherwise jobs are Ray tasks on the
            connected cluster (``ray.init`` first).
    """
    started = time.perf_counter()
    n = settings.episodes
    full = [POLICY, *(target.baselines if settings.baselines else ()), RANDOM]
    scored = [POLICY, *target.baselines, RANDOM]

    if settings.shield and target.safety is None:
        raise EvaluationError(
            f"{target.checkpoint}: --shield needs the run's `safety` section (constraints "
            "and fallback) in its config.yaml; this run has none."
        )

    def job(policy: str, test: str, level: str, **kw: Any) -> Job:
        played = seeded_job(policy, test, level, n, settings.seed, **kw)
        return dataclasses.replace(played, shielded=settings.shield)

    context = JobContext(
        target.env_id, target.env_config, str(target.checkpoint), safety=target.safety
    )
    clean_jobs = [
        job(p, "clean", level, record=(level == target.level))
        for p in scored
        for level in target.levels
    ]
    clean = {(r.job.policy, r.job.level): r for r in _run_all(context, clean_jobs, workers)}

    reference = clean[(RANDOM, target.level)]
    scale = reference.obs_std.astype(np.float32)
    switch_step = max(1, len(reference.step_rewards) // 2)
    missing = scoring.not_applicable(target, _has_default_action(target))
    perturbations = {
        "obs_noise": Perturbation(obs_noise=settings.obs_noise),
        "action_noise": Perturbation(action_noise=settings.action_noise),
        "random_agent": Perturbation(replaced=RANDOM),
        "faulty_agent": Perturbation(replaced=FAULTY),
    }
    skipped = {t: missing[t] for t in perturbations if t in missing}
    others = [level for level in target.levels if level != target.level]
    perturbed_jobs = [
        job(p, test, target.level, perturbation=pert)
        for p in full
        for test, pert in perturbations.items()
        if test not in skipped
    ] + [
        job(
            p,
            f"switch:{other}",
            target.level,
            perturbation=Perturbation(switch=(switch_step, other)),
        )
        for p in full
        for other in others
    ]
    context = dataclasses.replace(context, obs_scale=scale)
    perturbed = {(r.job.policy, r.job.test): r for r in _run_all(context, perturbed_jobs, workers)}

    levels = scoring.level_table(clean, scored, target)
    random_mean = levels[target.level][RANDOM]["mean"]
    scores = {
        p: scoring.summary(clean[(p, target.level)].returns, levels[target.level][p], random_mean)
        for p in scored
    }
    gap = {lvl: scoring.gap(levels[lvl], target.baselines) for lvl in target.levels}

    def robustness_gap(p: str) -> tuple[float, float]:
        if target.baselines:
            return gap[target.level]
        return random_mean, scores[p]["mean"]  # no baseline: the policy's own lead

    generalization = {p: scoring.generalization(levels, p, target) for p in full}
    robustness = {
        p: scoring.robustness(clean[(p, target.level)], perturbed, p, robustness_gap(p), skipped)
        for p in full
    }
    coordination = {p: clean[(p, target.level)].coordination for p in full}
    adaptability = {p: scoring.adaptability(clean, perturbed, p, target, switch_step) for p in full}
    efficiency = scoring.sample_efficiency(target, levels)

    dimensions = {}
    for p in full:
        dims = {
            "sample_efficiency": efficiency.get("auc") if p == POLICY else None,
            "generalization": generalization[p]["score"],
            "robustness": scoring.mean_or_none(t.get("retained") for t in robustness[p].values()),
            "coordination": coordination[p].get("score"),
            "adaptability": adaptability[p]["score"],
        }
        if p == RANDOM:  # the reference itself: nothing to lose or to recover
            dims["robustness"] = dims["adaptability"] = None
        for name in scoring.WEIGHTS:
            if name in missing:
                dims[name] = None
        dims["overall"] = scoring.overall(dims)
        dimensions[p] = dims

    return {
        "format_version": FORMAT_VERSION,
        "checkpoint": str(target.checkpoint),
        "run_dir": str(target.run_dir) if target.run_dir else None,
        "env": {"id": target.env_id, "config": target.env_config},
        "algorithm": target.algorithm,
        "seed": settings.seed,
        "episodes": n,
        "level": target.level,
        "trained_levels": list(target.trained_levels),
        "weights": dict(scoring.WEIGHTS),
        "policies": full,
        "scores": scores,
        "levels": levels,
        "dimensions": dimensions,
        "details": {
            "sample_efficiency": efficiency,
            "generalization": generalization,
            "robustness": robustness,
            "coordination": coordination,
            "adaptability": adaptability,
            "safety": {p: clean[(p, target.level)].safety for p in full}
            if target.safety is not None
            else {"unavailable": "the run has no safety section"},
        },
        "components": {p: clean[(p, target.level)].components for p in full},
        "actions": {p: clean[(p, target.level)].actions for p in full},
        "trace": {p: clean[(p, target.level)].trace for p in full},
        "settings": {
            "obs_noise": settings.obs_noise,
            "action_noise": settings.action_noise,
            "switch_step": switch_step,
            "held_out_seed": settings.seed,
            "baselines_full_suite": settings.baselines,
            "shielded": settings.shield,
            "safety": target.safety,
        },
        "definitions": dict(scoring.DEFINITIONS),
        "not_applicable": missing,
        "timing": {"wall_s": time.perf_counter() - started, "workers": workers},
    }


# --------------------------------------------------------------------------- entry point

RESULT_FILE = "evaluation.json"


@dataclass
class EvaluationResult:
    """What :func:`evaluate` wrote and found."""

    report_dir: Path
    result: dict[str, Any]
    files: dict[str, Path]


def default_report_dir(target: Target) -> Path:
    """``<run>/evaluation/<checkpoint>``, or ``evaluation_<checkpoint>`` beside a bare one."""
    return _report_dir(target.checkpoint, target.run_dir)


def _report_dir(checkpoint: Path, run_dir: Path | None) -> Path:
    if run_dir is not None:
        return run_dir / "evaluation" / checkpoint.name
    return checkpoint.parent / f"evaluation_{checkpoint.name}"


def _evaluate_versus(
    path: str | Path, settings: SuiteSettings, report: str | Path | None
) -> EvaluationResult | None:
    """A turn-based run's games against random play (:mod:`versus`), or None for others.

    ``settings.episodes`` games per seat; writes evaluation.json and report.md.
    """
    checkpoint, run_dir = locate(path)
    try:
        manifest = read_manifest(checkpoint)
    except PolicyExportError:
        return None  # resolve_target says what is wrong
    games = settings.episodes * len(manifest["agents"])
    result = versus_random(checkpoint, games, settings.seed)
    if result is None:
        return None
    out = Path(report) if report is not None else _report_dir(checkpoint, run_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = json_ready(result)
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(versus_markdown(result))
    return EvaluationResult(
        report_dir=out, result=result, files={"json": out / RESULT_FILE, "md": out / "report.md"}
    )


def evaluate(
    path: str | Path,
    settings: SuiteSettings | None = None,
    report: str | Path | None = None,
    workers: int | None = None,
    address: str | None = None,
) -> EvaluationResult:
    """Evaluate a checkpoint or run directory and write its report directory.

    Args:
        path: a checkpoint (with its ``policies/`` export) or a run directory (its best
            checkpoint).
        settings: episodes, seed, perturbation strengths (default :class:`SuiteSettings`).
        report: the report directory (default :func:`default_report_dir`).
        workers: 0 plays every episode in this process; None runs jobs as Ray tasks on a
            private local Ray (or the cluster at ``address``).
        address: a Ray cluster to run the jobs on; it must see the checkpoint's path.

    Raises:
        EvaluationError: see :func:`~rl_platform.evaluation.target.resolve_target`.
    """
    # matplotlib (the report's plots) is imported only when a report is written.
    from rl_platform.evaluation.report import write_report

    settings = settings or SuiteSettings()
    if settings.episodes < 1:
        raise EvaluationError(f"episodes must be at least 1, got {settings.episodes}")
    versus = _evaluate_versus(path, settings, report)
    if versus is not None:
        return versus
    target = resolve_target(path)
    started_ray = False
    if workers != 0:
        import ray

        quiet_logs(verbose=False)
        started_ray = not ray.is_initialized()  # connected here: disconnected at the end
        init_ray(address)
    try:
        result = evaluate_target(target, settings, workers=1 if workers is None else workers)
    finally:
        if started_ray:
            shutdown_ray()
    out = Path(report) if report is not None else default_report_dir(target)
    out.mkdir(parents=True, exist_ok=True)
    result = json_ready(result)
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    files = {"json": out / RESULT_FILE, **write_report(result, out)}
    return EvaluationResult(report_dir=out, result=result, files=files)


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN/inf as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
