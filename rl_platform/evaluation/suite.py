"""The evaluation suite: a checkpoint scored on five dimensions, next to baselines and random.

The seed's ``RLEvaluationSuite`` weighs sample efficiency (0.3), generalization (0.2),
robustness (0.2), coordination (0.2) and adaptability (0.1). Here each is a measured
quantity in [0, 1] (:data:`DEFINITIONS` says exactly how), computed for the trained
policy and, where it makes sense, for each of the env's heuristic baselines and for a
uniformly random policy, so every figure has a reference beside it.

Scores are mean per-agent episode returns of the env's reward with the run's reward
weights, greedy actions, on env seeds drawn from a stream keyed by the evaluation seed
(training seeds its env runners with small integers, so these episodes are held out).
A score is *normalized* at its level as ``(score - random) / (best baseline - random)``:
0 is random play, 1 is the best hand-written heuristic.

All episodes are played on the env's batched core in :mod:`rollout` jobs, which run in
parallel as Ray tasks (or in this process with ``workers=0``); each job seeds its own
generators from the evaluation seed and its names, so results do not depend on how jobs
are scheduled: the same seed gives the same figures.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rl_platform import registry
from rl_platform.checkpoints import EXPORT_DIR, PolicyExportError, read_manifest
from rl_platform.evaluation.baselines import RANDOM, random_actions
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

FORMAT_VERSION = 1
WEIGHTS = {
    "sample_efficiency": 0.3,
    "generalization": 0.2,
    "robustness": 0.2,
    "coordination": 0.2,
    "adaptability": 0.1,
}
DEFINITIONS = {
    "sample_efficiency": (
        "Area under the run's normalized learning curve: each iteration's mean per-agent "
        "training return of the env reward (metrics.csv reward_env), normalized at that "
        "iteration's level (0 = random, 1 = best baseline) and clipped to [0, 1], "
        "integrated over env steps from the first to the last iteration and divided by "
        "that width. 1 means best-baseline play from the first iteration on. Needs the run "
        "directory; baselines have no learning curve."
    ),
    "generalization": (
        "Mean normalized score (clipped to [0, 1]) on the task levels the run never trained "
        "on, divided by the mean normalized score on the levels it trained on (held-out env "
        "seeds everywhere), capped at 1: 1 means no loss on unseen levels. When the run "
        "trained on every level, it is the mean clipped normalized score over all levels on "
        "held-out seeds."
    ),
    "robustness": (
        "Mean over four perturbations at the main level of 1 - loss / (best baseline - "
        "random), clipped to [0, 1], where loss = max(0, clean score - perturbed score) on "
        "the same env seeds: Gaussian observation noise (std obs_noise x each feature's "
        "std under random play), each action replaced by a random one with probability "
        "action_noise, and one agent per episode replaced by a random agent or by a faulty "
        "one stuck at the env's do-nothing action. A policy that ignores its observations "
        "loses nothing to observation noise."
    ),
    "coordination": (
        "The env's coordination score in [0, 1] on clean episodes at the main level "
        "(BatchedCore.coordination: e.g. 1 - Gini of satisfaction for resource allocation, "
        "service level and bullwhip ratio for the supply chain, market impact for trading); "
        "the env-specific figures and the mean pairwise correlation of the agents' actions "
        "(Pearson, or Cohen's kappa for discrete actions) are reported beside it."
    ),
    "adaptability": (
        "Episodes start at the main level and switch to each other level halfway through "
        "(BatchedCore.switch_task). Per switch, (return after the switch - random's) / "
        "(the same policy's return over the same steps when it played that level from the "
        "start - random's), clipped to [0, 1]; the mean over switches. recovery_steps: steps "
        "after the switch until the 10-step mean reward comes within 5% of the "
        "reference-random gap of the reference's."
    ),
}
ROBUSTNESS_TESTS = ("obs_noise", "action_noise", "random_agent", "faulty_agent")
RECOVERY_WINDOW = 10
RECOVERY_TOLERANCE = 0.05
EPS = 1e-9


class EvaluationError(ValueError):
    """What to evaluate is missing, corrupt or unsupported; the message says which."""


@dataclass(frozen=True)
class SuiteSettings:
    """How much and how hard to evaluate."""

    episodes: int = 100
    seed: int = 0
    obs_noise: float = 0.2
    action_noise: float = 0.1
    baselines: bool = True  # run the whole suite for the baselines too (else: scores only)
    shield: bool = False  # every policy's actions pass the run's safety shield


@dataclass(frozen=True)
class Target:
    """A resolved checkpoint: its policy export, its run (if any) and its env."""

    checkpoint: Path
    run_dir: Path | None
    env_id: str
    env_config: dict[str, Any]
    algorithm: str
    level: str  # the main level: where the run ended
    trained_levels: tuple[str, ...]
    levels: tuple[str, ...]
    baselines: tuple[str, ...]
    curve: list[dict[str, Any]]  # metrics.csv rows (empty without a run)
    safety: dict[str, Any] | None = None  # the run's safety section (config.yaml)


# --------------------------------------------------------------------------- target


def resolve_target(path: str | Path) -> Target:
    """Find the checkpoint, run, env and levels behind a checkpoint or run directory.

    A run directory means its best checkpoint (``summary.json``), else its newest; only
    checkpoints inside the run directory are read (a ``best_checkpoint`` that resolves
    elsewhere, through ``..`` or a symlink, is refused, not followed). The policy export
    is loaded once and played on one observation of its env, so every error shows here.

    Raises:
        EvaluationError: nothing there, no checkpoint, no policy export, a corrupt one, a
            corrupt ``summary.json``, a checkpoint outside the run directory, an env that
            is not registered or has no batched core, or a policy that does not fit its
            env.
    """
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"{path}: no such checkpoint or run directory")
    run_dir = path if (path / "config.yaml").is_file() else None
    if run_dir is not None:
        checkpoint = _run_checkpoint(run_dir)
    else:
        checkpoint = path
        run_dir = next((p for p in path.parents[:3] if (p / "config.yaml").is_file()), None)
    try:
        manifest = read_manifest(checkpoint)
    except PolicyExportError as err:
        raise EvaluationError(f"{err} Is {path} a checkpoint written by rlp train?") from None
    if manifest.get("hierarchy"):
        raise EvaluationError(
            f"{checkpoint}: a hierarchical run (hierarchy:): its modules choose strategies "
            "every K steps (or act on the one-hot of a choice) rather than act on the env's "
            "observations, which the evaluation suite and serving do not play yet; "
            "bench/hierarchical.py scores a meta-controller against fixed strategies"
        )
    env_id = manifest["env"]["id"]
    entry = registry.get_env(env_id)
    if entry is None:
        raise EvaluationError(
            f"{checkpoint}: its policies were trained on env {env_id!r}, which is not "
            "registered here (rlp envs list shows the registered envs)"
        )
    try:
        env_cls = entry.load()
    except (ImportError, AttributeError, ValueError) as err:
        raise EvaluationError(f"{checkpoint}: env {env_id!r} cannot be loaded: {err}") from None
    if not hasattr(env_cls, "core_cls"):
        raise EvaluationError(
            f"{checkpoint}: env {env_id!r} has no batched core; the evaluation suite plays "
            "the platform's envs (rlp envs list) only"
        )
    try:
        from rl_platform.evaluation.policy import TrainedPolicy

        policy = TrainedPolicy(checkpoint)  # fail here, clearly, rather than in every worker
    except PolicyExportError as err:
        raise EvaluationError(str(err)) from None
    env_config = dict(manifest["env"]["config"])
    curve: list[dict[str, Any]] = []
    safety = None
    if run_dir is not None:
        curve = _read_curve(run_dir / "metrics.csv")
        safety = _run_safety(run_dir)
    levels = tuple(env_cls.task_levels)
    start = env_config.get("task", levels[0])
    if start not in levels:
        raise EvaluationError(
            f"{checkpoint}: the export's env config has task {start!r}; env {env_id!r} "
            f"has levels {', '.join(levels)}"
        )
    known = [r["level"] for r in curve if r.get("level") in levels]
    trained = tuple(dict.fromkeys(known)) or (start,)
    last = curve[-1].get("level") if curve else None
    level = last if last in levels else start
    _check_plays(checkpoint, policy, env_id, env_config, level)
    return Target(
        checkpoint=checkpoint,
        run_dir=run_dir,
        env_id=env_id,
        env_config=env_config,
        algorithm=manifest.get("algorithm", "?"),
        level=level,
        trained_levels=trained,
        levels=levels,
        baselines=tuple(env_cls.baselines),
        curve=curve,
        safety=safety,
    )


def _check_plays(
    checkpoint: Path, policy: Any, env_id: str, env_config: dict[str, Any], level: str
) -> None:
    """Raise EvaluationError unless the policy acts on one observation of its env's core."""
    try:
        core = make_core(env_id, env_config, level, 1)
    except (ValueError, TypeError, KeyError) as err:
        raise EvaluationError(
            f"{checkpoint}: the export's env config does not fit env {env_id!r}: {err}"
        ) from None
    obs = np.zeros((1, core.num_agents, *core.observation_space.shape), np.float32)
    try:
        actions = np.asarray(policy.actions(obs))
        policy.reset()
    except Exception as err:  # noqa: BLE001 (any failure: the export does not fit its env)
        raise EvaluationError(
            f"{checkpoint}: the policy cannot act on env {env_id!r}'s observations: "
            f"{type(err).__name__}: {err}"
        ) from None
    expected = (1, core.num_agents, *core.action_space.shape)
    if actions.shape != expected:
        raise EvaluationError(
            f"{checkpoint}: the policy's actions have shape {actions.shape[1:]} for "
            f"{len(policy.agents)} agents; env {env_id!r} takes {expected[1:]}"
        )


def _read_curve(metrics: Path) -> list[dict[str, Any]]:
    """metrics.csv rows with a numeric env_steps and return (a torn last line is skipped)."""
    if not metrics.is_file():
        return []
    try:
        with metrics.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return [r for r in rows if _numeric(r.get("env_steps")) and _has_score(r)]


def _numeric(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _has_score(row: dict[str, Any]) -> bool:
    value = row.get("reward_env")
    return _numeric(value) if value not in (None, "") else _numeric(row.get("episode_return_mean"))


def _run_safety(run_dir: Path) -> dict[str, Any] | None:
    """The ``safety`` section of the run's config.yaml, if any."""
    import yaml

    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    safety = config.get("safety") if isinstance(config, dict) else None
    return safety if isinstance(safety, dict) else None


def _run_checkpoint(run_dir: Path) -> Path:
    """The run's best checkpoint (``summary.json``), else its newest; inside ``run_dir``.

    ``summary.json`` records absolute paths; a run directory that was moved or copied
    (or synced back from cloud storage) is read at its new place, through the path
    relative to the recorded ``run_dir`` (or ``remote``).
    """
    best = _summary_best(run_dir)
    if best is not None and best.is_dir():
        return _inside_run(run_dir, best, "summary.json's best_checkpoint")
    checkpoints = sorted((run_dir / "trial").glob("checkpoint_*"))
    if not checkpoints:
        raise EvaluationError(f"{run_dir}: the run has no checkpoint (trial/checkpoint_*)")
    return _inside_run(run_dir, checkpoints[-1], "its newest checkpoint")


def _inside_run(run_dir: Path, checkpoint: Path, what: str) -> Path:
    """``checkpoint`` if it (and its policies/) resolve inside ``run_dir``, else refuse."""
    root = run_dir.resolve()
    for place in (checkpoint, checkpoint / EXPORT_DIR):
        if place.exists() and not place.resolve().is_relative_to(root):
            raise EvaluationError(
                f"{run_dir}: {what} ({place}) resolves to {place.resolve()}, outside the run "
                "directory; only policy exports inside the given run directory are read. "
                "Pass that checkpoint directly if you trust it."
            )
    return checkpoint


def _summary_best(run_dir: Path) -> Path | None:
    """Where summary.json's best_checkpoint is now, or None (no summary, no best)."""
    summary = run_dir / "summary.json"
    if not summary.is_file():
        return None
    try:
        data = json.loads(summary.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise EvaluationError(
            f"{summary}: corrupt run summary, not UTF-8 JSON ({err}); delete it to use the "
            "run's newest checkpoint, or pass a checkpoint directory"
        ) from None
    if not isinstance(data, dict):
        raise EvaluationError(
            f"{summary}: corrupt run summary: expected a JSON object, got "
            f"{type(data).__name__}; delete it to use the run's newest checkpoint"
        )
    best = data.get("best_checkpoint")
    if best is None:
        return None
    if not isinstance(best, str) or not best:
        raise EvaluationError(
            f"{summary}: best_checkpoint must be a path string or null, got {best!r:.80}"
        )
    for key in ("run_dir", "remote"):
        base = data.get(key)
        if isinstance(base, str) and base and best.startswith(base.rstrip("/") + "/"):
            return run_dir / best[len(base.rstrip("/")) + 1 :]
    # Relative: to the run directory. Absolute and elsewhere: _inside_run refuses it.
    return run_dir / best


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
            from rl_platform.evaluation.policy import TrainedPolicy

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
        from rl_platform.safety import SafetySpec, Shield

        shield = Shield(core, SafetySpec.model_validate(context.safety), max_entries=0)
    return play(core, act, job, context.obs_scale, reset, shield)


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
        target: from :func:`resolve_target`.
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
    perturbations = {
        "obs_noise": Perturbation(obs_noise=settings.obs_noise),
        "action_noise": Perturbation(action_noise=settings.action_noise),
        "random_agent": Perturbation(replaced=RANDOM),
        "faulty_agent": Perturbation(replaced=FAULTY),
    }
    others = [level for level in target.levels if level != target.level]
    perturbed_jobs = [
        job(p, test, target.level, perturbation=pert)
        for p in full
        for test, pert in perturbations.items()
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

    levels = _level_table(clean, scored, target)
    scores = {
        p: _summary(clean[(p, target.level)].returns, levels[target.level][p]) for p in scored
    }
    gap = {lvl: _gap(levels[lvl], target.baselines) for lvl in target.levels}

    generalization = {p: _generalization(levels, p, target) for p in full}
    robustness = {
        p: _robustness(clean[(p, target.level)], perturbed, p, gap[target.level]) for p in full
    }
    coordination = {p: clean[(p, target.level)].coordination for p in full}
    adaptability = {p: _adaptability(clean, perturbed, p, target, switch_step) for p in full}
    efficiency = _sample_efficiency(target, levels)

    dimensions = {}
    for p in full:
        dims = {
            "sample_efficiency": efficiency.get("auc") if p == POLICY else None,
            "generalization": generalization[p]["score"],
            "robustness": _mean_or_none(t["retained"] for t in robustness[p].values()),
            "coordination": coordination[p].get("score"),
            "adaptability": adaptability[p]["score"],
        }
        if p == RANDOM:  # the reference itself: nothing to lose or to recover
            dims["robustness"] = dims["adaptability"] = None
        dims["overall"] = overall(dims)
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
        "weights": dict(WEIGHTS),
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
        "definitions": dict(DEFINITIONS),
        "timing": {"wall_s": time.perf_counter() - started, "workers": workers},
    }


def overall(dimensions: dict[str, float | None]) -> float | None:
    """The seed's weighted sum over the measured dimensions, weights renormalized over them."""
    measured = {k: v for k, v in dimensions.items() if k in WEIGHTS and v is not None}
    if not measured:
        return None
    total = sum(WEIGHTS[k] for k in measured)
    return sum(WEIGHTS[k] * v for k, v in measured.items()) / total


def normalized(score: float, low: float, high: float) -> float | None:
    """(score - random) / (best baseline - random); None when no baseline beats random."""
    if not high - low > EPS:
        return None
    return (score - low) / (high - low)


def _clip01(value: float | None) -> float:
    return 0.0 if value is None else float(min(1.0, max(0.0, value)))


def _mean_or_none(values) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _gap(
    level_scores: dict[str, dict[str, Any]], baselines: tuple[str, ...]
) -> tuple[float, float]:
    """(random's mean, the best baseline's mean) at a level."""
    low = level_scores[RANDOM]["mean"]
    high = max((level_scores[b]["mean"] for b in baselines), default=low)
    return low, high


def _level_table(clean, scored: list[str], target: Target) -> dict[str, dict[str, dict]]:
    table: dict[str, dict[str, dict]] = {}
    for level in target.levels:
        row = {
            p: {
                "mean": float(clean[(p, level)].returns.mean()),
                "std": float(clean[(p, level)].returns.std()),
            }
            for p in scored
        }
        low, high = _gap(row, target.baselines)
        for entry in row.values():
            entry["normalized"] = normalized(entry["mean"], low, high)
        table[level] = row
    return table


def _summary(returns: np.ndarray, level_entry: dict[str, Any]) -> dict[str, Any]:
    mean, std = float(returns.mean()), float(returns.std())
    half = 1.96 * std / math.sqrt(max(1, len(returns) - 1))
    return {
        "mean": mean,
        "std": std,
        "ci95": [mean - half, mean + half],
        "normalized": level_entry["normalized"],
    }


def _generalization(levels, policy: str, target: Target) -> dict[str, Any]:
    norm = {lvl: _clip01(levels[lvl][policy]["normalized"]) for lvl in target.levels}
    trained = [lvl for lvl in target.levels if lvl in target.trained_levels]
    unseen = [lvl for lvl in target.levels if lvl not in target.trained_levels]
    seen_score = float(np.mean([norm[lvl] for lvl in trained]))
    if not unseen:
        return {
            "score": float(np.mean(list(norm.values()))),
            "trained": seen_score,
            "unseen": {},
            "note": "trained on every level: mean normalized score on held-out seeds",
        }
    unseen_score = float(np.mean([norm[lvl] for lvl in unseen]))
    score = min(1.0, unseen_score / seen_score) if seen_score > EPS else 0.0
    return {
        "score": score,
        "trained": seen_score,
        "unseen": {lvl: norm[lvl] for lvl in unseen},
        "note": f"unseen levels: {', '.join(unseen)}",
    }


def _robustness(clean: PlayedEpisodes, perturbed, policy: str, gap) -> dict[str, Any]:
    low, high = gap
    base = float(clean.returns.mean())
    out = {}
    for test in ROBUSTNESS_TESTS:
        score = float(perturbed[(policy, test)].returns.mean())
        loss = max(0.0, base - score)
        retained = _clip01(1.0 - loss / (high - low)) if high - low > EPS else None
        out[test] = {"score": score, "loss": loss, "retained": retained}
    return out


def _adaptability(clean, perturbed, policy: str, target: Target, switch_step: int):
    switches = {}
    for other in target.levels:
        if other == target.level:
            continue
        switched = perturbed[(policy, f"switch:{other}")].step_rewards[switch_step:]
        ref = clean[(policy, other)].step_rewards[switch_step:]
        rnd = clean[(RANDOM, other)].step_rewards[switch_step:]
        steps = min(len(switched), len(ref), len(rnd))
        if steps == 0:
            continue
        switched, ref, rnd = switched[:steps], ref[:steps], rnd[:steps]
        post, ref_sum, rnd_sum = (float(np.nansum(x)) for x in (switched, ref, rnd))
        denom = ref_sum - rnd_sum
        retained = _clip01((post - rnd_sum) / denom) if denom > EPS else None
        switches[f"{target.level}->{other}"] = {
            "retained": retained,
            "recovery_steps": _recovery_steps(switched, ref, abs(denom) / steps),
            "post_switch_return": post,
            "reference_return": ref_sum,
            "random_return": rnd_sum,
        }
    score = _mean_or_none(s["retained"] for s in switches.values())
    return {"score": score, "switches": switches}


def _recovery_steps(switched: np.ndarray, ref: np.ndarray, gap_per_step: float) -> int | None:
    """Steps until the windowed mean reward comes within tolerance of the reference's."""
    tolerance = RECOVERY_TOLERANCE * gap_per_step
    window = min(RECOVERY_WINDOW, len(switched))
    for k in range(len(switched) - window + 1):
        if np.nanmean(switched[k : k + window]) >= np.nanmean(ref[k : k + window]) - tolerance:
            return k
    return None


def _sample_efficiency(target: Target, levels) -> dict[str, Any]:
    if target.run_dir is None:
        return {"unavailable": "a bare checkpoint: no run directory, so no learning curve"}
    if not target.curve:
        return {"unavailable": f"{target.run_dir}: no metrics.csv"}
    n_agents = len(read_manifest(target.checkpoint)["agents"])
    steps, scores, norm, row_levels = [], [], [], []
    for row in target.curve:
        level = row.get("level") or target.level
        if level not in levels:
            continue
        value = row.get("reward_env")
        score = (
            float(value)
            if value not in (None, "")
            else float(row["episode_return_mean"]) / n_agents
        )
        if not math.isfinite(score):
            continue
        low, high = _gap(levels[level], target.baselines)
        steps.append(int(float(row["env_steps"])))
        scores.append(score)
        norm.append(normalized(score, low, high))
        row_levels.append(row.get("level", ""))
    if not steps or any(v is None for v in norm):
        return {"unavailable": "no learning curve rows, or no baseline beats random"}
    clipped = np.clip(np.asarray(norm, dtype=float), 0.0, 1.0)
    x = np.asarray(steps, dtype=float)
    width = x[-1] - x[0]
    auc = float(np.trapezoid(clipped, x) / width) if width > 0 else float(clipped[-1])
    final = float(np.mean(clipped[-3:]))
    return {
        "auc": auc,
        "final_normalized": final,
        "steps_to_baseline": _first_step(steps, clipped >= 1.0),
        "steps_to_90pct_final": _first_step(steps, clipped >= 0.9 * final) if final > 0 else None,
        "curve": {"env_steps": steps, "score": scores, "normalized": norm, "level": row_levels},
    }


def _first_step(steps: list[int], reached: np.ndarray) -> int | None:
    hits = np.flatnonzero(reached)
    return int(steps[hits[0]]) if hits.size else None


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
    if target.run_dir is not None:
        return target.run_dir / "evaluation" / target.checkpoint.name
    return target.checkpoint.parent / f"evaluation_{target.checkpoint.name}"


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
        EvaluationError: see :func:`resolve_target`.
    """
    from rl_platform.evaluation.report import write_report

    settings = settings or SuiteSettings()
    if settings.episodes < 1:
        raise EvaluationError(f"episodes must be at least 1, got {settings.episodes}")
    target = resolve_target(path)
    started_ray = False
    if workers != 0:
        import ray

        from rl_platform.ray_session import init_ray, quiet_logs

        quiet_logs(verbose=False)
        started_ray = not ray.is_initialized()  # connected here: disconnected at the end
        init_ray(address)
    try:
        result = evaluate_target(target, settings, workers=1 if workers is None else workers)
    finally:
        if started_ray:
            from rl_platform.ray_session import shutdown_ray

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
