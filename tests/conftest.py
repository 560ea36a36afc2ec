import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

# A suite started in the background by a shell without job control (`cmd &` in a script)
# inherits SIGINT ignored, and so would every `rlp` it starts: the tests that stop one
# with SIGINT (Ctrl-C) would wait on it forever. Python's handler here gives children
# the default disposition back.
if (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
):
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"


@pytest.fixture
def quickstart_path() -> Path:
    return QUICKSTART


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): two test processes, fewer on one core.

    Each integration module starts a Ray of its own; more than two at once only share the
    same cores more thinly. `-n N` sets another number, `-n 0` runs in one process.
    """
    return min(2, os.cpu_count() or 1)


# --------------------------------------------------------------------------- rlp


def run_rlp(
    *args: str,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    python_options: tuple[str, ...] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """`rlp ARGS` as a real process (`python -m rl_platform`), 200 columns wide.

    `env` adds to this process's environment; `python_options` go before `-m`
    (e.g. ``("-X", "importtime")``).
    """
    return subprocess.run(
        [sys.executable, *python_options, "-m", "rl_platform", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=timeout,
    )


@pytest.fixture
def rlp() -> Callable[..., subprocess.CompletedProcess]:
    """Runs `rlp` in a subprocess: for what needs a real process (signals, sys.path, imports).

    Exit codes and messages of bad input are checked in process with
    ``typer.testing.CliRunner`` instead.
    """
    return run_rlp


# --------------------------------------------------------------------------- experiments


def tiny_experiment(
    env_id: str = "rendezvous",
    algorithm: str = "ppo",
    *,
    env_config: dict[str, Any] | None = None,
    name: str = "tiny",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A small valid experiment as the YAML's dict: one iteration, sampled in the driver.

    `overrides` maps ``key.path`` to a value, set on top as ``rlp train --set`` would
    (e.g. ``{"algorithm.hyperparams.lr": -1, "stop.training_iteration": 2}``).
    """
    raw: dict[str, Any] = {
        "name": name,
        "env": {"id": env_id, "config": dict(env_config or {})},
        "algorithm": {"id": algorithm},
        "resources": {"num_env_runners": 0},
        "stop": {"training_iteration": 1},
    }
    for key, value in (overrides or {}).items():
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


@pytest.fixture
def experiment_dict() -> Callable[..., dict[str, Any]]:
    """The tiny experiment factory: ``experiment_dict(env_id, algorithm, **kwargs)`` -> dict."""
    return tiny_experiment


@pytest.fixture
def make_experiment(tmp_path) -> Callable[..., Path]:
    """Writes a tiny experiment YAML: ``make_experiment(env_id, algorithm, **kwargs)`` -> path.

    Takes `tiny_experiment`'s arguments, and `path` (default ``tmp_path/experiment.yaml``).
    """

    def make(
        env_id: str = "rendezvous",
        algorithm: str = "ppo",
        *,
        path: Path | None = None,
        **kwargs: Any,
    ) -> Path:
        path = path or tmp_path / "experiment.yaml"
        path.write_text(yaml.safe_dump(tiny_experiment(env_id, algorithm, **kwargs)))
        return path

    return make
