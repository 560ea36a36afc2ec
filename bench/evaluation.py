"""What `rlp evaluate` costs and finds on the quickstart: wall time in-process vs Ray tasks.

How to run:
    python bench/evaluation.py                          # trains the quickstart first (~1 min)
    python bench/evaluation.py --run runs/quickstart/<timestamp> --episodes 20 100

Evaluates the run's best checkpoint with ``workers=0`` (every job in this process) and
with Ray tasks on a private local Ray (all cores), for each episode count; checks the
figures are identical both ways (same seed), prints the wall times and the trained
policy's dimensions next to the best baseline's, and writes
bench/results/evaluation.json.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import rl_platform
from rl_platform.evaluation.suite import SuiteSettings, evaluate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, help="a quickstart run directory (default: train)")
    parser.add_argument("--episodes", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    run = args.run
    if run is None:
        run = rl_platform.train(ROOT / "experiments" / "quickstart.yaml", output=scratch).run_dir
    report = {"run": str(run), "episodes": {}}
    for episodes in args.episodes:
        timings, results = {}, {}
        for mode, workers in (("in_process", 0), ("ray_tasks", None)):
            started = time.perf_counter()
            outcome = evaluate(
                run, SuiteSettings(episodes=episodes), report=scratch / mode, workers=workers
            )
            timings[mode] = time.perf_counter() - started
            results[mode] = {k: v for k, v in outcome.result.items() if k != "timing"}
        same = results["in_process"] == results["ray_tasks"]
        result = results["ray_tasks"]
        best = max(
            (p for p in result["policies"] if p not in ("policy", "random")),
            key=lambda p: result["scores"][p]["mean"],
        )
        report["episodes"][episodes] = {
            "wall_s": timings,
            "identical": same,
            "scores": {p: result["scores"][p] for p in ("policy", best, "random")},
            "dimensions": {p: result["dimensions"][p] for p in ("policy", best, "random")},
        }
        print(
            f"{episodes:>4} episodes: in-process {timings['in_process']:.1f} s, "
            f"Ray tasks {timings['ray_tasks']:.1f} s, identical figures: {same}"
        )
        for p in ("policy", best):
            dims = result["dimensions"][p]
            text = ", ".join(f"{k} {v:.3f}" for k, v in dims.items() if v is not None)
            print(f"      {p:<10} score {result['scores'][p]['mean']:.3f}: {text}")
    path = args.output / "evaluation.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
