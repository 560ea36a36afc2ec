"""The quickstart made tiny, and `rlp` as a subprocess: what the CLI-level tests share."""

import os
import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[2] / "experiments" / "quickstart.yaml"
# Small batches, few epochs, no evaluation: a quickstart iteration in about a second.
TINY = [
    "algorithm.hyperparams.train_batch_size_per_learner=400",
    "algorithm.hyperparams.minibatch_size=100",
    "algorithm.hyperparams.num_epochs=2",
    "resources.num_envs_per_env_runner=2",
    "evaluation.every=0",
]


def rlp(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m rl_platform ARGS` with a wide terminal; output captured as text."""
    env = {**(env if env is not None else os.environ), "COLUMNS": "250"}
    cmd = [sys.executable, "-m", "rl_platform", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def sets(items: list[str]) -> list[str]:
    """`--set` options for key=value overrides."""
    return [arg for item in items for arg in ("--set", item)]


def only_run(output: Path, name: str = "quickstart") -> Path:
    """The one run directory under ``output/name``."""
    (run_dir,) = [p for p in (output / name).iterdir() if p.is_dir()]
    return run_dir
