"""The suite's dimensions: weights, definitions and the arithmetic behind each figure.

Pure functions of played episodes (:class:`~rl_platform.evaluation.rollout.PlayedEpisodes`)
and the resolved :class:`~rl_platform.evaluation.target.Target`; no episodes are played here.
Every policy and baseline is scored on the same dimensions; sample efficiency is reported
apart (baselines do not learn). Normalization (:func:`normalize_row`) is the one code path
of the suite and of the evaluation during training. Details: docs/evaluation.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl_platform.evaluation.baselines import RANDOM
from rl_platform.evaluation.rollout import PlayedEpisodes
from rl_platform.evaluation.statistics import t_interval
from rl_platform.evaluation.target import Target

WEIGHTS = {  # relative weights of `overall`; renormalized over what the env supports
    "generalization": 0.2,
    "robustness": 0.2,
    "coordination": 0.2,
    "adaptability": 0.1,
}
FRACTION_OF_FINAL = 0.9  # sample efficiency: steps until this share of the final score
DEFINITIONS = {
    "sample_efficiency": (
        "Reported apart, not in overall (baselines do not learn). Every checkpoint the run "
        "kept plays the suite's greedy clean episodes at the main level; its score is "
        "normalized (0 = random, 1 = best baseline) and clipped to [0, 1]. The figure (auc) "
        "is the area under that greedy curve over env steps, from the first kept checkpoint "
        "to the last, divided by that width; steps_to_90pct_final is the env steps of the "
        "first checkpoint reaching 90% of the last one's normalized score. n/a with the "
        "reason for a bare checkpoint or a run that kept one checkpoint; training returns "
        "(exploratory) are never used."
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
        "loses nothing to observation noise. On an env without baselines the gap is the "
        "policy's own clean score - random's (the share of its lead over random play it "
        "keeps); 0 for a policy that does not beat random play (no lead to keep)."
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
        "start - random's), clipped to [0, 1], 0 where that return does not beat random's "
        "(no lead to keep); the mean over switches. recovery_steps: steps "
        "after the switch until the 10-step mean reward comes within 5% of the "
        "reference-random gap of the reference's."
    ),
}
NORMALIZED_WITHOUT_BASELINE = (
    "the env declares no baseline, so normalized scores (0 = random, 1 = best baseline) "
    "have no 1: the suite scores against random play (vs_random: mean - random's mean)"
)
NO_BASELINE_CURVE = "the env declares no baseline: the greedy curve has no 1 to be normalized to"
ROBUSTNESS_TESTS = ("obs_noise", "action_noise", "random_agent", "faulty_agent")
RECOVERY_WINDOW = 10
RECOVERY_TOLERANCE = 0.05
EPS = 1e-9


def overall_weights(missing: dict[str, str] | set[str] = frozenset()) -> dict[str, float]:
    """:data:`WEIGHTS` without the dimensions in `missing`, renormalized to sum to 1.

    `missing` holds what no row can have on this env (one level, no baseline): the same
    weights then serve every policy, baseline and random alike.
    """
    kept = {k: w for k, w in WEIGHTS.items() if k not in missing}
    total = sum(kept.values())
    return {k: w / total for k, w in kept.items()} if total > 0 else {}


def overall(dimensions: dict[str, float | None], weights: dict[str, float]) -> float | None:
    """The weighted sum of the dimensions in `weights`; None if the row lacks one of them.

    Weights are never renormalized per row: a row missing a dimension its env supports
    has no overall (random play, the reference, has no robustness or adaptability).
    """
    if not weights or any(dimensions.get(k) is None for k in weights):
        return None
    return float(sum(w * float(dimensions[k]) for k, w in weights.items()))


def normalized(score: float, low: float, high: float) -> float | None:
    """(score - random) / (best baseline - random); None when no baseline beats random."""
    if not high - low > EPS:
        return None
    return (score - low) / (high - low)


def normalize_row(row: dict[str, dict[str, Any]], baselines: tuple[str, ...]) -> None:
    """Set ``normalized`` in each entry of a level's row from the entries' ``mean``.

    `row` maps policy -> {"mean": ...} and holds random and the baselines, all scored on
    the same episodes. The suite's level table and the evaluation during training both
    normalize through here (one code path).
    """
    low, high = gap(row, baselines)
    for entry in row.values():
        entry["normalized"] = normalized(entry["mean"], low, high)


def _clip01(value: float | None) -> float:
    return 0.0 if value is None else float(min(1.0, max(0.0, value)))


def mean_or_none(values) -> float | None:
    """The mean of the values that are not None; None when none is."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def gap(level_scores: dict[str, dict[str, Any]], baselines: tuple[str, ...]) -> tuple[float, float]:
    """(random's mean, the best baseline's mean) at a level."""
    low = level_scores[RANDOM]["mean"]
    high = max((level_scores[b]["mean"] for b in baselines), default=low)
    return low, high


def not_applicable(target: Target, has_default_action: bool = True) -> dict[str, str]:
    """What the suite cannot measure on the target's env, and why: name -> reason.

    Names are dimensions, ``normalized``, ``faulty_agent`` (a robustness test) and
    ``trace``. Envs brought in from other libraries (VMAS, PettingZoo) have one task
    level and no baselines: they are scored against random play only.
    """
    out = {}
    if not target.baselines:
        out["normalized"] = NORMALIZED_WITHOUT_BASELINE
        out["sample_efficiency"] = NO_BASELINE_CURVE
    if len(target.levels) < 2:
        out["generalization"] = (
            f"the env has one task level ({target.levels[0]!r}): no unseen level to generalize to"
        )
        out["adaptability"] = (
            f"the env has one task level ({target.levels[0]!r}): no task switch to adapt to"
        )
    elif not target.baselines:
        out["generalization"] = "the env declares no baseline: levels cannot be normalized"
    if not has_default_action:
        out["faulty_agent"] = "the env has no do-nothing action (default_action) to get stuck at"
    if not target.trace_fields:
        out["trace"] = "the env records no trace fields; the episode trace shows rewards only"
    return out


def level_table(clean, scored: list[str], target: Target) -> dict[str, dict[str, dict]]:
    """Per level and policy: mean, std and normalized score of the clean episodes."""
    table: dict[str, dict[str, dict]] = {}
    for level in target.levels:
        row = {
            p: {
                "mean": float(clean[(p, level)].returns.mean()),
                "std": float(clean[(p, level)].returns.std()),
            }
            for p in scored
        }
        normalize_row(row, target.baselines)
        table[level] = row
    return table


def summary(returns: np.ndarray, level_entry: dict[str, Any], random_mean: float) -> dict[str, Any]:
    """A policy's score at the main level: mean, std, 95% t interval, normalized, - random's."""
    mean, std = float(returns.mean()), float(returns.std())
    interval = t_interval(returns)
    return {
        "mean": mean,
        "std": std,
        "ci95": [interval.low, interval.high],
        "normalized": level_entry["normalized"],
        "vs_random": mean - random_mean,
    }


def generalization(levels, policy: str, target: Target) -> dict[str, Any]:
    """The generalization dimension of `policy` (:data:`DEFINITIONS`)."""
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


def robustness(
    clean: PlayedEpisodes,
    perturbed,
    policy: str,
    gap,
    skipped: dict[str, str] | None = None,
    no_gap: float | None = None,
) -> dict[str, Any]:
    """Per perturbation: the score under it and the share of the gap retained.

    `skipped`: tests not played, with the reason (e.g. ``faulty_agent`` without a
    do-nothing action); they read ``{"unavailable": reason}``. `no_gap`: what is
    retained when the gap is not positive (0.0 where the gap is the policy's own lead
    over random play: no lead, none kept; None: not measurable).
    """
    low, high = gap
    base = float(clean.returns.mean())
    out = {}
    for test in ROBUSTNESS_TESTS:
        if skipped and test in skipped:
            out[test] = {"unavailable": skipped[test]}
            continue
        score = float(perturbed[(policy, test)].returns.mean())
        loss = max(0.0, base - score)
        retained = _clip01(1.0 - loss / (high - low)) if high - low > EPS else no_gap
        out[test] = {"score": score, "loss": loss, "retained": retained}
    return out


def adaptability(clean, perturbed, policy: str, target: Target, switch_step: int):
    """The adaptability dimension of `policy`: per level switch and their mean."""
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
        retained = _clip01((post - rnd_sum) / denom) if denom > EPS else 0.0  # no lead
        switches[f"{target.level}->{other}"] = {
            "retained": retained,
            "recovery_steps": recovery_steps(switched, ref, abs(denom) / steps),
            "post_switch_return": post,
            "reference_return": ref_sum,
            "random_return": rnd_sum,
        }
    score = mean_or_none(s["retained"] for s in switches.values())
    return {"score": score, "switches": switches}


def recovery_steps(switched: np.ndarray, ref: np.ndarray, gap_per_step: float) -> int | None:
    """Steps until the windowed mean reward comes within tolerance of the reference's."""
    tolerance = RECOVERY_TOLERANCE * gap_per_step
    window = min(RECOVERY_WINDOW, len(switched))
    for k in range(len(switched) - window + 1):
        if np.nanmean(switched[k : k + window]) >= np.nanmean(ref[k : k + window]) - tolerance:
            return k
    return None


def sample_efficiency(
    points: list[dict[str, Any]], low: float, high: float, has_baselines: bool
) -> dict[str, Any]:
    """The area under the greedy-score curve of the kept checkpoints, and steps to 90%.

    Args:
        points: per kept checkpoint, oldest first: ``checkpoint``, ``iteration``,
            ``env_steps`` and ``returns`` (its greedy clean episodes at the main level).
        low: random's mean on the same episodes.
        high: the best baseline's mean on the same episodes.
        has_baselines: False on an env without baselines (no normalized curve).
    """
    steps = [int(p["env_steps"]) for p in points]
    intervals = [t_interval(np.asarray(p["returns"], dtype=float)) for p in points]
    scores = [e.point for e in intervals]
    norm = [normalized(v, low, high) for v in scores]
    curve = {
        "checkpoint": [p["checkpoint"] for p in points],
        "iteration": [p.get("iteration") for p in points],
        "env_steps": steps,
        "score": scores,
        "low": [e.low for e in intervals],
        "high": [e.high for e in intervals],
        "normalized": norm,
    }
    if not has_baselines:
        return {"unavailable": NO_BASELINE_CURVE, "curve": curve}
    if any(v is None for v in norm):
        return {"unavailable": "no baseline beats random play at the main level", "curve": curve}
    clipped = np.clip(np.asarray(norm, dtype=float), 0.0, 1.0)
    x = np.asarray(steps, dtype=float)
    width = x[-1] - x[0]
    auc = float(np.trapezoid(clipped, x) / width) if width > 0 else float(clipped[-1])
    final = float(clipped[-1])
    return {
        "measure": "auc",
        "auc": auc,
        "final_normalized": final,
        "steps_to_baseline": _first_step(steps, clipped >= 1.0),
        "steps_to_90pct_final": (
            _first_step(steps, clipped >= FRACTION_OF_FINAL * final) if final > 0 else None
        ),
        "checkpoints": len(points),
        "curve": curve,
    }


def _first_step(steps: list[int], reached: np.ndarray) -> int | None:
    hits = np.flatnonzero(reached)
    return int(steps[hits[0]]) if hits.size else None
