"""The A/B report's always-valid test, simulated: error rate under peeking, power, sessions.

Simulates A/B tests as ``GET /v1/ab`` judges them (rl_platform.serving.sequential: the
normal-mixture mSPRT on per-session outcomes, plug-in variances, first look at 30
sessions per arm), each looked at after every 10 sessions up to 4,000 sessions (2,000
per arm at a 50/50 split):
- A/A (no difference): how often a winner is declared, next to the old report (Welch's
  t-test read at the same looks from 30 per arm);
- a true difference of 0.5 standard deviations: power, wrong-way decisions and the
  sessions (both arms) to a decision, next to the fixed-sample design at 80% power;
- the mixture scale tau against effects of 0.1, 0.2 and 0.5 standard deviations;
- sessions per arm before the first look: A/A tests of a rare 0/1 outcome (Bernoulli 0.1)
  and of normal outcomes, looked at after every session up to 1,000 sessions.

Run:  python bench/ab_sequential.py [--experiments 1000]
Writes bench/results/ab_sequential.json. Seconds on 2 cores (numpy only, no Ray).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
from provenance import commit
from scipy import stats

from rl_platform.serving.sequential import ALPHA, MIN_SESSIONS, TAU, simulate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ab_sequential.json"
SESSIONS, LOOK_EVERY, EFFECT = 4000, 10, 0.5
TAUS, EFFECTS = (0.1, 0.25, 0.5, 1.0), (0.1, 0.2, 0.5)
MIN_SESSIONS_SWEEP, SWEEP_SESSIONS = (5, 10, 20, 30, 50), 1000


def rare_success(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A 0/1 outcome with success rate 0.1, standardized (mean 0, variance 1)."""
    return ((rng.random(shape) < 0.1) - 0.1) / 0.3


def summary(sim, effect: float) -> dict:
    """Decision rate, right and wrong ways, and sessions to a decision of a simulation."""
    decided = sim.stopped
    return {
        "decided": float(decided.mean()),
        "power": float((sim.winner == 1).mean()) if effect else None,
        "wrong_way": float((sim.winner == -1).mean()) if effect else None,
        "mean_sessions_to_decision": float(sim.sessions[decided].mean()) if decided.any() else None,
        "median_sessions_to_decision": float(np.median(sim.sessions[decided]))
        if decided.any()
        else None,
        # Undecided experiments count with every session they ran.
        "mean_sessions_run": float(sim.sessions.mean()),
    }


def fixed_sample_sessions(effect: float, power: float, alpha: float = ALPHA) -> int:
    """Sessions (both arms, 50/50) of a one-look two-sided test with this power."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return 2 * math.ceil(2 * (z / effect) ** 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, seed = args.experiments, args.seed
    design = {"sessions": SESSIONS, "look_every": LOOK_EVERY, "seed": seed}
    start = time.perf_counter()

    aa = {
        "msprt": summary(simulate(0.0, n, SESSIONS, LOOK_EVERY, seed=seed), 0.0),
        "msprt_split_0.1": summary(simulate(0.0, n, SESSIONS, LOOK_EVERY, 0.1, seed=seed), 0.0),
        "t_test_every_look": summary(
            simulate(0.0, n, SESSIONS, LOOK_EVERY, test="t", seed=seed), 0
        ),
    }
    ab = summary(simulate(EFFECT, n, SESSIONS, LOOK_EVERY, seed=seed + 1), EFFECT)
    ab["fixed_sample_sessions_80"] = fixed_sample_sessions(EFFECT, 0.8)
    ab["fixed_sample_sessions_95"] = fixed_sample_sessions(EFFECT, 0.95)
    taus = [
        {
            "tau": tau,
            "effect": effect,
            **summary(simulate(effect, n, SESSIONS, LOOK_EVERY, tau=tau, seed=seed + 2), effect),
        }
        for tau in TAUS
        for effect in EFFECTS
    ]
    first_look = [
        {
            "min_sessions": m,
            "aa_decided_binary": float(
                simulate(
                    0.0, n, SWEEP_SESSIONS, 1, min_sessions=m, noise=rare_success, seed=seed
                ).stopped.mean()
            ),
            "aa_decided_normal": float(
                simulate(0.0, n, SWEEP_SESSIONS, 1, min_sessions=m, seed=seed).stopped.mean()
            ),
        }
        for m in MIN_SESSIONS_SWEEP
    ]
    mc_error = 3 * math.sqrt(ALPHA * (1 - ALPHA) / n)

    print(f"{n} experiments, a look every {LOOK_EVERY} sessions up to {SESSIONS}, alpha {ALPHA}")
    print(f"A/A, winner declared (bound {ALPHA} + {mc_error:.3f} Monte Carlo):")
    for name, row in aa.items():
        print(f"  {name:<20} {row['decided']:.3f}")
    print(
        f"difference {EFFECT} sd, tau {TAU}: power {ab['power']:.3f}, "
        f"wrong way {ab['wrong_way']:.3f}"
    )
    print(
        f"  sessions to a decision: mean {ab['mean_sessions_to_decision']:.0f}, median "
        f"{ab['median_sessions_to_decision']:.0f}; fixed-sample test: "
        f"{ab['fixed_sample_sessions_80']} (80% power), {ab['fixed_sample_sessions_95']} (95%)"
    )
    print("tau  effect  power  mean sessions to a decision")
    for row in taus:
        mean = row["mean_sessions_to_decision"]
        print(
            f"{row['tau']:<4} {row['effect']:<7} {row['power']:.3f}  "
            + (f"{mean:.0f}" if mean is not None else "-")
        )
    print(f"A/A, a look after every session up to {SWEEP_SESSIONS}: winner declared")
    print("min sessions per arm  0/1 outcome  normal outcome")
    for row in first_look:
        print(
            f"{row['min_sessions']:<21} {row['aa_decided_binary']:.3f}        "
            f"{row['aa_decided_normal']:.3f}"
        )

    result = {
        "command": "python bench/ab_sequential.py" + (f" --experiments {n}" if n != 1000 else ""),
        "test": "normal-mixture mSPRT on session outcomes (rl_platform.serving.sequential)",
        "experiments": n,
        "alpha": ALPHA,
        "tau": TAU,
        "min_sessions_per_arm": MIN_SESSIONS,
        "design": design,
        "monte_carlo_bound": ALPHA + mc_error,
        "aa": aa,
        "effect_0.5": ab,
        "tau_sweep": taus,
        "first_look": {"sessions": SWEEP_SESSIONS, "look_every": 1, "rows": first_look},
        "wall_time_s": round(time.perf_counter() - start, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "commit": commit(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
