"""The evaluation suite: a checkpoint scored next to its env's baselines and random play.

Generalization, robustness, coordination and adaptability, each a measured quantity in
[0, 1] (:data:`~rl_platform.evaluation.scoring.DEFINITIONS`), for the trained policy,
each of the env's heuristic baselines and a uniformly random policy alike, from greedy
episodes on held-out env seeds, and one ``overall`` with the same weights for every row;
sample efficiency apart, from the greedy scores of the run's kept checkpoints. What an
env cannot support (one task level, no baselines) is n/a with its reason
(:func:`scoring.not_applicable`). Episodes run on
the env's batched core in :mod:`rollout` jobs, as Ray tasks or in this process
(``workers=0``); the same seed gives the same figures. What each dimension measures:
docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rl_platform.checkpoints import PolicyExportError, pack_export, read_manifest
from rl_platform.config import SafetySpec
from rl_platform.envs.common import action_names
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
    kept: dict[str, str] = field(default_factory=dict)  # job policy name -> kept checkpoint
    # checkpoint path -> its export's files: Ray workers load these, not the path, so a
    # node that cannot see the checkpoint (a cluster, a URI fetched here) plays it too
    exports: dict[str, dict[str, bytes]] = field(default_factory=dict, repr=False)


KEPT_PREFIX = "checkpoint:"  # a kept checkpoint's job policy name: checkpoint:<name>


def run_job(context: JobContext, job: Job) -> PlayedEpisodes:
    """Play one job's episodes (in a Ray worker or here)."""
    core = make_core(context.env_id, context.env_config, job.level, job.episodes)
    reset = None
    if job.policy == POLICY or job.policy in context.kept:
        path = context.checkpoint if job.policy == POLICY else context.kept[job.policy]
        policy = _POLICIES.get(path)
        if policy is None:
            files = context.exports.get(path)
            policy = TrainedPolicy.from_export(files) if files else TrainedPolicy(path)
            _POLICIES[path] = policy
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


def paired_job(
    policy: str,
    test: str,
    level: str,
    episodes: int,
    seed: int,
    perturbation: Perturbation = Perturbation(),
    record: bool = False,
) -> Job:
    """A :func:`rollout.seeded_job` whose noise seed is the same for every policy.

    Every policy and baseline then meets the same perturbation draws (observation noise,
    randomized actions, the replaced agent's random actions) on the same env seeds: a
    like-for-like comparison. Random play's own actions draw from a stream keyed apart.
    """
    played = seeded_job(policy, test, level, episodes, seed, perturbation, record)
    return dataclasses.replace(played, noise_seed=stable_seed("noise", seed, test, level))


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
    paths = [context.checkpoint, *context.kept.values()]
    exports = {path: pack_export(path) for path in paths}
    shared = ray.put(dataclasses.replace(context, exports=exports))
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
        played = paired_job(policy, test, level, n, settings.seed, **kw)
        return dataclasses.replace(played, shielded=settings.shield)

    kept = {f"{KEPT_PREFIX}{c.name}": c for c in target.kept} if target.kept_note is None else {}
    context = JobContext(
        target.env_id,
        target.env_config,
        str(target.checkpoint),
        safety=target.safety,
        kept={name: str(c.path) for name, c in kept.items()},
    )
    clean_jobs = [
        job(p, "clean", level, record=(level == target.level))
        for p in scored
        for level in target.levels
    ] + [job(name, "clean", target.level) for name in kept]
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
        p: scoring.robustness(
            clean[(p, target.level)],
            perturbed,
            p,
            robustness_gap(p),
            skipped,
            no_gap=None if target.baselines else 0.0,  # no lead over random: none kept
        )
        for p in full
    }
    coordination = {p: clean[(p, target.level)].coordination for p in full}
    adaptability = {p: scoring.adaptability(clean, perturbed, p, target, switch_step) for p in full}
    efficiency = _sample_efficiency(target, kept, clean, levels[target.level])

    # Every row on the same dimensions with the same weights: only what the env cannot
    # support (or no row could be scored on) is left out, identically for all.
    dimensions = {}
    for p in full:
        dims = {
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
        dimensions[p] = dims
    unscored = {
        name: "no policy or baseline could be scored on it in this evaluation"
        for name in scoring.WEIGHTS
        if name not in missing and all(dimensions[p][name] is None for p in full if p != RANDOM)
    }
    excluded = {**{k: missing[k] for k in scoring.WEIGHTS if k in missing}, **unscored}
    weights = scoring.overall_weights(excluded)
    for dims in dimensions.values():
        dims["overall"] = scoring.overall(dims, weights)

    return {
        "format_version": FORMAT_VERSION,
        "checkpoint": str(target.checkpoint),
        "run_dir": str(target.run_dir) if target.run_dir else None,
        "env": {
            "id": target.env_id,
            "config": target.env_config,
            "action_names": action_names(target.env_id, target.env_config),
        },
        "algorithm": target.algorithm,
        "seed": settings.seed,
        "episodes": n,
        "level": target.level,
        "trained_levels": list(target.trained_levels),
        "weights": weights,
        "overall_excluded": excluded,
        "reference": RANDOM,
        "policies": full,
        "scores": scores,
        "levels": levels,
        "dimensions": dimensions,
        "sample_efficiency": {
            k: efficiency.get(k)
            for k in ("measure", "auc", "steps_to_90pct_final", "steps_to_baseline", "unavailable")
            if k in efficiency
        },
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


def _sample_efficiency(
    target: Target, kept: dict[str, Any], clean: dict, main_row: dict[str, dict]
) -> dict[str, Any]:
    """The greedy curve of the kept checkpoints at the main level, or why there is none."""
    if target.kept_note is not None:
        return {"unavailable": target.kept_note}
    points = [
        {
            "checkpoint": c.name,
            "iteration": c.iteration,
            "env_steps": c.env_steps,
            "returns": clean[(name, target.level)].returns,
        }
        for name, c in kept.items()
    ]
    low, high = scoring.gap(main_row, target.baselines)
    return scoring.sample_efficiency(points, low, high, bool(target.baselines))


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
