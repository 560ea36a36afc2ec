"""A private Ray listens on loopback and ends with the command; resume never loses a run.

Each `rlp` here starts its own private Ray (no --address): that is what is under test.
One terminated `rlp train` run and one finished `rlp tune` sweep serve the module.
"""

import csv
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import ray
import requests
import yaml
from quickstart_runs import QUICKSTART, TINY, only_run, sets

from rl_platform.ray_session import LOOPBACK, loopback_only
from rl_platform.resume import ResumeError
from rl_platform.serving.app import free_port
from rl_platform.training import train
from rl_platform.tuning import tune

GONE_WITHIN_S = 20  # after the command ends, none of its processes may remain longer


@dataclass
class Watched:
    """A command, its process tree and listening sockets, sampled while it runs."""

    args: list[str]
    proc: subprocess.Popen = None
    seen: dict[int, tuple[str, float]] = field(default_factory=dict)  # pid -> (name, created)
    sockets: set[tuple[str, int, str]] = field(default_factory=set)  # (ip, port, process)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "Watched":
        env = {**os.environ, "COLUMNS": "200"}
        env.pop("RAY_ADDRESS", None)
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set() and self.proc.poll() is None:
            try:
                tree = [psutil.Process(self.proc.pid)]
                tree += tree[0].children(recursive=True)
            except psutil.NoSuchProcess:
                break
            for process in tree:
                try:
                    self.seen.setdefault(process.pid, (process.name(), process.create_time()))
                    for conn in process.net_connections(kind="inet"):
                        if conn.status == psutil.CONN_LISTEN:
                            self.sockets.add((conn.laddr.ip, conn.laddr.port, process.name()))
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
            time.sleep(0.3)

    def wait_until(self, condition, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                pytest.fail(f"the command ended early ({self.proc.returncode}): {out} {err}")
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.3)

    def finish(self, timeout: float = 300) -> tuple[str, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            self._stop.set()
            if self.proc.poll() is None:
                self.proc.kill()
        return out, err

    def left(self) -> dict[int, str]:
        """Processes of its tree still running GONE_WITHIN_S after it ended."""
        deadline = time.monotonic() + GONE_WITHIN_S
        while True:
            alive = {}
            for pid, (name, created) in self.seen.items():
                try:
                    process = psutil.Process(pid)
                    if process.create_time() == created and process.status() != "zombie":
                        alive[pid] = name
                except psutil.NoSuchProcess:
                    continue
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.5)


def rlp(*args: str) -> list[str]:
    return [sys.executable, "-m", "rl_platform", *args]


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def answers_without_a_token(port: int) -> bool:
    """Whether a Serve replica's gRPC server serves a call that carries no Ray token."""
    import grpc
    from ray.serve.generated import serve_pb2

    service = serve_pb2.DESCRIPTOR.services_by_name["ASGIService"]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for method in service.methods:
            try:
                channel.unary_unary(f"/{service.full_name}/{method.name}")(b"", timeout=10)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                    continue
            return True
    return False


def rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def listing(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def damaged_copy(source: Path, target: Path, damage) -> Path:
    shutil.copytree(source, target, symlinks=True)
    damage(target)
    return target


def truncate(pattern: str):
    def damage(directory: Path) -> None:
        path = sorted(directory.glob(pattern))[-1]
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return damage


# --------------------------------------------------------------------------- Ray's settings


def test_the_ray_setting_that_keeps_a_private_ray_on_loopback_still_works():
    """Ray 2.60 keeps a node on 127.0.0.1 only through an internal setting (ray_session)."""
    from ray._private import services

    assert not ray.is_initialized()
    with loopback_only():
        assert services.get_node_ip_address() == LOOPBACK
        assert services.resolve_ip_for_localhost("localhost") == LOOPBACK


def test_a_killed_driver_leaves_no_ray_process_behind():
    """SIGKILL gives the driver no chance to clean up: the watchdog ends Ray's processes."""
    code = (
        "import time\nfrom rl_platform.ray_session import init_ray\ninit_ray()\n"
        "print('up', flush=True)\ntime.sleep(600)\n"
    )
    watched = Watched([sys.executable, "-c", code]).start()
    try:
        assert watched.proc.stdout.readline().strip() == "up"
        time.sleep(3)  # the agents are up, the watchdog has seen them
        agents = {name for name, _ in watched.seen.values()}
        assert {"raylet", "gcs_server"} <= agents, agents
        watched.proc.kill()
    finally:
        watched.finish()
    assert watched.left() == {}


# --------------------------------------------------------------------------- rlp train


@dataclass
class Terminated:
    run_dir: Path
    returncode: int
    stdout: str
    stderr: str
    sockets: set
    left: dict


TERMINATED_STOP = 16


@pytest.fixture(scope="module")
def terminated(tmp_path_factory) -> Terminated:
    """A tiny quickstart run (its own private Ray) stopped by SIGTERM after 4 iterations.

    It would stop at TERMINATED_STOP: far enough that on a quiet machine, where an
    iteration takes about a second, the SIGTERM still comes before the end.
    """
    output = tmp_path_factory.mktemp("runs")
    stop = f"stop.training_iteration={TERMINATED_STOP}"
    items = [*TINY, stop, "checkpoint.every=3", "checkpoint.keep=null"]
    watched = Watched(rlp("train", str(QUICKSTART), *sets(items), "--output", str(output)))
    watched.start()
    try:
        watched.wait_until(
            lambda: len(rows(next(output.glob("quickstart/*/metrics.csv"), Path("-")))) >= 4
        )
        time.sleep(1)  # one more look at the sockets
        watched.proc.send_signal(signal.SIGTERM)
    finally:
        out, err = watched.finish()
    run_dir = only_run(output)
    return Terminated(run_dir, watched.proc.returncode, out, err, watched.sockets, watched.left())


def test_a_private_ray_of_rlp_train_listens_on_loopback_only(terminated):
    assert len(terminated.sockets) >= 3, terminated.sockets  # GCS, raylet, workers, agents
    exposed = {s for s in terminated.sockets if not is_loopback(s[0])}
    assert not exposed, f"listening beyond loopback: {sorted(exposed)}"


def test_sigterm_stops_a_run_like_ctrl_c_and_no_ray_process_outlives_it(terminated):
    assert terminated.returncode == 143, terminated.stderr[-3000:]
    assert "Traceback" not in terminated.stderr, terminated.stderr[-3000:]
    summary = json.loads((terminated.run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["iterations"] >= 4
    assert f"rlp train --resume {terminated.run_dir}" in terminated.stdout
    assert terminated.left == {}


@pytest.mark.parametrize(
    "damage, named",
    [
        (truncate("experiment_state-*.json"), "experiment_state-"),
        (truncate("tuner.pkl"), "tuner.pkl"),
        (truncate("basic-variant-state-*.json"), "basic-variant-state-"),
        (lambda d: shutil.rmtree(sorted((d / "trial").glob("checkpoint_*"))[-1]), "checkpoint_"),
    ],
    ids=["experiment-state", "tuner-pkl", "search-state", "checkpoint-gone"],
)
def test_a_damaged_run_is_not_resumed_and_nothing_changes(terminated, tmp_path, damage, named):
    copy = damaged_copy(terminated.run_dir, tmp_path / "run", damage)
    before = listing(copy)
    with pytest.raises(ResumeError, match=named) as info:
        train(None, resume=copy)
    assert "Nothing was changed" in str(info.value)
    assert listing(copy) == before


def test_rlp_train_resume_of_a_damaged_experiment_state_exits_2(terminated, tmp_path):
    """The case that used to restart the run from iteration 1 and delete its checkpoints."""
    copy = damaged_copy(terminated.run_dir, tmp_path / "run", truncate("experiment_state-*.json"))
    before = listing(copy)
    proc = subprocess.run(rlp("train", "--resume", str(copy)), capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "experiment state is damaged" in proc.stderr and "Traceback" not in proc.stderr
    assert listing(copy) == before


@pytest.mark.slow
def test_rlp_serve_listens_on_loopback_and_leaves_no_ray_process(terminated):
    port = free_port()
    watched = Watched(rlp("serve", str(terminated.run_dir), "--port", str(port)))
    watched.start()
    try:

        def healthy() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
            except requests.ConnectionError:
                return False

        watched.wait_until(healthy)
        time.sleep(2)  # one more look at the sockets
        exposed = {s for s in watched.sockets if not is_loopback(s[0])}
        open_to_all = [s for s in exposed if answers_without_a_token(s[1])]  # while it serves
        watched.proc.send_signal(signal.SIGTERM)
    finally:
        out, err = watched.finish()
    assert watched.proc.returncode == 0, err[-3000:]
    assert any(port == p for _, p, _ in watched.sockets)
    # Ray Serve binds each replica's inter-deployment gRPC server to [::] (hard-coded in
    # Ray 2.60); Ray's token authentication guards it. Nothing else may be exposed.
    assert all(name.startswith("ray::ServeReplica") for _, _, name in exposed), exposed
    assert not open_to_all, open_to_all
    assert watched.left() == {}


@pytest.mark.slow
def test_a_resumed_run_holds_each_iteration_once_in_every_table(terminated):
    """Resuming from the checkpoint at iteration 3 (or later): the rows after it go first."""
    run_dir = terminated.run_dir
    watched = Watched(rlp("train", "--resume", str(run_dir))).start()
    out, err = watched.finish()
    assert watched.proc.returncode == 0, err[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    expected = list(range(1, TERMINATED_STOP + 1))
    assert [int(r["iteration"]) for r in rows(run_dir / "metrics.csv")] == expected
    assert not (run_dir / "monitor.csv").exists()
    trial = run_dir / "trial"
    assert [int(r["training_iteration"]) for r in rows(trial / "progress.csv")] == expected
    results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [r["training_iteration"] for r in results] == expected
    assert watched.left() == {}  # a normal end leaves nothing either


# --------------------------------------------------------------------------- rlp tune


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A finished one-trial sweep of PPO on the two-step game (its own private Ray)."""
    root = tmp_path_factory.mktemp("sweeps")
    sweep = {
        "name": "tiny_sweep",
        "seed": 0,
        "env": {"id": "two_step_game"},
        "algorithm": {
            "id": "ppo",
            "hyperparams": {"train_batch_size_per_learner": 200, "minibatch_size": 100},
            "network": {"hidden_sizes": [16]},
        },
        "resources": {"num_env_runners": 0},
        "stop": {"training_iteration": 2},
        "checkpoint": {"every": 1, "keep": 1},
        "tune": {
            "num_samples": 1,
            "scheduler": "none",
            "search_space": {"algorithm.hyperparams.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
        },
    }
    (root / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    watched = Watched(rlp("tune", str(root / "sweep.yaml"), "--output", str(root / "out")))
    out, err = watched.start().finish()
    assert watched.proc.returncode == 0, err[-3000:]
    assert not {s for s in watched.sockets if not is_loopback(s[0])}
    assert watched.left() == {}
    (sweep_dir,) = (root / "out" / "tiny_sweep").iterdir()
    return sweep_dir


def unfinished(directory: Path) -> None:
    (directory / "summary.json").unlink()  # as a killed driver leaves it


@pytest.mark.slow
@pytest.mark.parametrize(
    "pattern", ["searcher-state-*.pkl", "search_gen_state-*.json", "experiment_state-*.json"]
)
def test_a_damaged_sweep_is_not_resumed_and_nothing_changes(sweep_dir, tmp_path, pattern):
    copy = damaged_copy(
        sweep_dir, tmp_path / "sweep", lambda d: (unfinished(d), truncate(pattern)(d))
    )
    before = listing(copy)
    with pytest.raises(ResumeError, match=pattern.split("*")[0]):
        tune(resume=copy)
    assert listing(copy) == before


@pytest.mark.slow
def test_rlp_tune_resume_of_a_damaged_searcher_state_exits_2(sweep_dir, tmp_path):
    """The case that used to hang forever (and ignore the first Ctrl-C)."""
    copy = damaged_copy(
        sweep_dir,
        tmp_path / "sweep",
        lambda d: (unfinished(d), truncate("searcher-state-*.pkl")(d)),
    )
    before = listing(copy)
    proc = subprocess.run(
        rlp("tune", "--resume", str(copy)), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "search state is damaged" in proc.stderr and "Traceback" not in proc.stderr
    assert listing(copy) == before
