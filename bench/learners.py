"""Do 2 data-parallel learners learn like 1? The quickstart (MAPPO, trading), 3 seeds each.

How to run (about 10 minutes on 2 cores; each group holds a lock file while it trains,
so that two Ray-starting jobs never overlap):

    python bench/learners.py                    # seeds 0-2, both groups, then rlp compare
    python bench/learners.py --groups quickstart_remote1 --add   # 1 remote learner, added

Each group is one ``rlp train experiments/quickstart.yaml --seeds ...`` (the multi-seed
machinery: concurrent trials, greedy scores on 100 episodes, IQM with 95% CIs):

- ``quickstart_1learner``: as shipped, the learner in the algorithm's process
  (``num_learners: 0``);
- ``quickstart_2learners``: ``num_learners: 2`` (torch DDP over gloo) with
  ``train_batch_size_per_learner`` and ``minibatch_size`` halved, so each iteration
  samples the same 2,000 env steps and each gradient step averages the same 500 (250 per
  learner): the same algorithm, split over two processes. CPU reservations are lowered
  (``num_cpus_per_learner: 0.25``, ``num_cpus_per_env_runner: 0.5``) so the run fits
  Ray's 2 CPUs here;
- ``quickstart_remote1`` (``--groups``): ``num_learners: 1`` (one remote learner, no DDP).

Then ``rlp compare`` of the groups (with ``--add``, also of the groups learners.json
has already). Writes bench/results/learners/ (each group's aggregate.json and .png,
compare/), bench/results/learners.json (IQM [CI] of the greedy scores, the learning
curves, wall time and env steps/s per group, commit, machine) and learners.png (each
group's training-return IQM and its 95% band against env steps).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import commit

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "quickstart.yaml"
RESULTS = ROOT / "bench" / "results"
LOCK = Path(tempfile.gettempdir()) / "ray.lock"

GROUPS = {
    "quickstart_1learner": [],
    "quickstart_2learners": [
        "resources.num_learners=2",
        "resources.num_cpus_per_learner=0.25",
        "resources.num_cpus_per_env_runner=0.5",
        "algorithm.hyperparams.train_batch_size_per_learner=1000",
        "algorithm.hyperparams.minibatch_size=250",
    ],
    "quickstart_remote1": [
        "resources.num_learners=1",
        "resources.num_cpus_per_learner=0.5",
        "resources.num_cpus_per_env_runner=0.5",
    ],
}


def rlp(*args: str) -> list[str]:
    return [sys.executable, "-m", "rl_platform", *args]


def train_group(name: str, seeds: str, scratch: Path) -> tuple[Path, float]:
    """Run one group under the Ray lock; its group directory and wall time."""
    sets = [arg for item in [*GROUPS[name], f"name={name}"] for arg in ("--set", item)]
    command = rlp("train", str(EXPERIMENT), "--seeds", seeds, *sets, "--output", str(scratch))
    print(" ".join(command[1:]), flush=True)
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.perf_counter()
        proc = subprocess.run(command, env={**os.environ, "COLUMNS": "120"})
        wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name}: rlp train exited {proc.returncode}")
    (group,) = [p for p in (scratch / name).iterdir() if p.is_dir()]
    return group, wall


def shown(path: Path) -> Path:
    """`path` relative to the checkout where it lies inside it (no machine paths in results)."""
    path = path.resolve()
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def group_figures(group: Path, wall: float) -> dict:
    """What learners.json keeps of a group: scores, IQM [CI], the curve, speed."""
    record = json.loads((group / "aggregate.json").read_text())
    summaries = [
        json.loads((group / run / "summary.json").read_text()) for run in record["runs"].values()
    ]
    return {
        "seeds": record["seeds"],
        "scores": record["scores"],
        "iqm": record["iqm"],
        "mean": record["mean"],
        "random": record["random"],
        "baselines": record["baselines"],
        "curve": record["curve"],
        "env_steps": [s["env_steps"] for s in summaries],
        "env_steps_per_s": [s["env_steps_per_s"] for s in summaries],
        "wall_s": wall,
    }


def plot(figures: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, group in figures.items():
        curve = group["curve"]
        iqm = group["iqm"]
        label = f"{name}: greedy IQM {iqm['point']:.2f} [{iqm['low']:.2f}, {iqm['high']:.2f}]"
        (line,) = ax.plot(curve["env_steps"], curve["iqm"], label=label)
        ax.fill_between(
            curve["env_steps"], curve["low"], curve["high"], color=line.get_color(), alpha=0.2
        )
    ax.set_xlabel("env steps")
    ax.set_ylabel("training return per agent (IQM, 95% band)")
    ax.set_title(f"quickstart (MAPPO, trading), {len(next(iter(figures.values()))['seeds'])} seeds")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument(
        "--groups", nargs="+", choices=list(GROUPS), default=list(GROUPS)[:2], help="to train"
    )
    parser.add_argument("--add", action="store_true", help="keep learners.json's other groups")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = args.output / "learners.json"
    report = json.loads(results.read_text()) if args.add and results.is_file() else {}
    groups = {k: v for k, v in report.get("groups", {}).items() if k not in args.groups}
    commits = {k: v.get("commit", report.get("commit")) for k, v in groups.items()}
    scratch = Path(tempfile.mkdtemp(prefix="bench_learners_"))
    kept = args.output / "learners"
    for name in args.groups:
        group, wall = train_group(name, args.seeds, scratch)
        groups[name] = {"overrides": GROUPS[name], **group_figures(group, wall)}
        commits[name] = commit()
        (kept / name).mkdir(parents=True, exist_ok=True)
        for file in ("aggregate.json", "aggregate.png"):  # not the checkpoints
            shutil.copy(group / file, kept / name / file)
    # The kept copies, named relative to the checkout: compare.md and .json record them.
    inputs = [str(shown(kept / name)) for name in groups]
    compare = str(shown(kept / "compare"))
    proc = subprocess.run(rlp("compare", *inputs, "--output", compare), cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"rlp compare exited {proc.returncode}")
    for name in groups:
        groups[name]["commit"] = commits[name]
    report = {
        "experiment": "experiments/quickstart.yaml",
        "seeds": args.seeds,
        "groups": groups,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "note": "2 cores shared with other work (other sessions' tests and runs)",
        },
    }
    results.write_text(json.dumps(report, indent=2) + "\n")
    plot(groups, args.output / "learners.png")
    for name, f in groups.items():
        iqm = f["iqm"]
        print(
            f"{name:>22}: greedy IQM {iqm['point']:.3f} [{iqm['low']:.3f}, {iqm['high']:.3f}]"
            f"  scores {[round(x, 3) for x in f['scores']]}  wall {f['wall_s']:.0f} s"
        )
    print(f"wrote {results}, learners.png and {kept}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
