"""`rlp evaluate` like for like: the two-step QMIX checkpoint's overall against each baseline.

Trains ``experiments/two_step_qmix.yaml`` (or takes ``--run RUN_DIR``), evaluates its
checkpoint with this checkout's suite (100 episodes, in this process) and, with
``--before-src DIR`` (the source tree of an older commit, e.g. ``git archive``'d), with
that tree's ``rlp evaluate`` on the same checkpoint in a subprocess; writes
``bench/results/evaluate_like_for_like.json`` (docs/evaluation.md, before and after)::

    python bench/evaluate_like_for_like.py --before-src /tmp/main-src --before-commit 7d0c0bc
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import ROOT, commit

EXPERIMENT = ROOT / "experiments" / "two_step_qmix.yaml"
RESULTS = ROOT / "bench" / "results" / "evaluate_like_for_like.json"


def rows(result: dict) -> dict:
    """Per policy: score, its interval and every dimension with overall."""
    return {
        name: {
            "score": result["scores"][name]["mean"],
            "ci95": result["scores"][name].get("ci95"),
            **result["dimensions"][name],
        }
        for name in result["policies"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained two-step QMIX run directory")
    parser.add_argument("--before-src", type=Path, help="source tree of the older commit")
    parser.add_argument("--before-commit", default=None, help="that tree's commit (label)")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from rl_platform.evaluation.suite import SuiteSettings, evaluate

    start = time.time()
    scratch = Path(tempfile.mkdtemp(prefix="like_for_like_"))
    run = args.run
    if run is None:
        from rl_platform.training import train

        trained = train(EXPERIMENT, output=scratch / "runs")
        run = trained.run_dir
    after = evaluate(run, SuiteSettings(episodes=args.episodes), scratch / "after", workers=0)
    summary = {
        "command": (
            f"rlp train experiments/two_step_qmix.yaml; rlp evaluate RUN_DIR --episodes "
            f"{args.episodes} --workers 0"
        ),
        "episodes": args.episodes,
        "after": {
            "commit": commit(),
            "weights": after.result["weights"],
            "sample_efficiency": after.result["sample_efficiency"],
            "rows": rows(after.result),
        },
    }
    if args.run is None:  # the greedy curve: the same run keeping a checkpoint every 20
        from rl_platform.training import train

        overrides = ["checkpoint.every=20", "checkpoint.keep=null"]
        kept = train(EXPERIMENT, overrides, output=scratch / "kept").run_dir
        curve = evaluate(
            kept, SuiteSettings(episodes=args.episodes), scratch / "kept_eval", workers=0
        )
        details = curve.result["details"]["sample_efficiency"]
        summary["kept_checkpoints"] = {"overrides": overrides, "sample_efficiency": details}
    if args.before_src is not None:
        report = scratch / "before"
        cmd = [sys.executable, "-m", "rl_platform", "evaluate", str(run)]
        cmd += ["--episodes", str(args.episodes), "--workers", "0", "--report", str(report)]
        env = {**os.environ, "PYTHONPATH": str(args.before_src), "COLUMNS": "200"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=args.before_src)
        if proc.returncode != 0:
            raise SystemExit(f"the older rlp evaluate failed:\n{proc.stderr[-3000:]}")
        before = json.loads((report / "evaluation.json").read_text())
        summary["before"] = {
            "commit": args.before_commit,
            "weights": before["weights"],
            "rows": rows(before),
        }
    summary["wall_time_s"] = round(time.time() - start, 1)
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "note": "2 cores shared with other work during the run",
    }
    summary["commit"] = commit()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    for label in ("before", "after"):
        if label in summary:
            overall = {k: v.get("overall") for k, v in summary[label]["rows"].items()}
            print(label, json.dumps(overall))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
