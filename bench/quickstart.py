"""Time the quickstart experiment end to end and report its sampling rate.

How to run:  python bench/quickstart.py [--iterations N]
Writes bench/results/quickstart.json and prints a table. Figures on the 2-core dev
machine are in the README and the issue notes.
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=None, help="override stop")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    runs = args.output / "runs"
    cmd = [
        sys.executable,
        "-m",
        "rl_platform",
        "train",
        str(ROOT / "experiments/quickstart.yaml"),
        "--output",
        str(runs),
    ]
    if args.iterations:
        cmd += ["--set", f"stop.training_iteration={args.iterations}"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"quickstart failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    run_dir = max((runs / "quickstart").iterdir(), key=lambda p: p.stat().st_mtime)
    summary = json.loads((run_dir / "summary.json").read_text())
    figures = {
        "command": " ".join(cmd[1:]),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus",
        "wall_time_s (process, incl. Ray start)": round(wall, 1),
        "train_wall_time_s (Tune run)": round(summary["wall_time_s"], 1),
        "iterations": summary["iterations"],
        "env_steps": summary["env_steps"],
        "env_steps_per_s (sampled)": round(summary["env_steps_per_s"]),
        "final_episode_return_mean": round(summary["episode_return_mean"], 3),
    }
    for key, value in figures.items():
        print(f"{key:>40}  {value}")
    (args.output / "quickstart.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
