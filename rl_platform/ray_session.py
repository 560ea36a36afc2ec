"""Starting or joining Ray: the one place the platform calls ``ray.init``.

Joining a cluster (``address`` or ``$RAY_ADDRESS``) changes nothing of the cluster; a
private Ray listens on 127.0.0.1 only and ends with this process (:func:`shutdown_ray`,
at exit too, and a watchdog if the driver is killed). SIGTERM acts as Ctrl-C does
(:func:`received_signal` tells which came). The loopback setting relies on Ray's internal
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, used here only and guarded by
``tests/integration/test_run_safety.py``; details: docs/security.md.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rl_platform.config import ConfigError
from rl_platform.trust import worker_env_vars

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from rl_platform.config import ExperimentConfig

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# Read by Ray's ray_constants when ray is imported, and by every process it starts.
LOOPBACK_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# How long Ray's processes get to end on their own after ray.shutdown(), then after SIGTERM.
EXIT_GRACE_S = 3.0
KILL_GRACE_S = 2.0
WATCH_PERIOD_S = 1.0
PROC = Path("/proc")


class RayStartError(RuntimeError):
    """Ray could not be started or joined."""


@dataclass
class PrivateRay:
    """The private Ray this process started: its first processes and the watchdog."""

    roots: dict[int, int]  # pid -> start time (clock ticks after boot)
    node_ip: str
    watchdog: subprocess.Popen | None = None
    tracked: dict[int, int] = field(default_factory=dict)

    def processes(self) -> dict[int, int]:
        """Ray's processes now: the roots and their descendants (pid -> start time)."""
        self.tracked = _descendants({**self.roots, **self.tracked}, _process_table())
        return dict(self.tracked)


_private: PrivateRay | None = None
_received: int | None = None


# --------------------------------------------------------------------------- start


def init_ray(
    address: str | None = None,
    verbose: bool = False,
    *,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> bool:
    """Join the Ray at `address` (or ``$RAY_ADDRESS``), or start a private local Ray.

    Does nothing when this process is already connected. A private Ray has no dashboard,
    listens on 127.0.0.1 only and ends with this process (see the module docstring).

    Args:
        address: a cluster address; None starts a private Ray unless ``$RAY_ADDRESS`` is set.
        verbose: let Ray's and the workers' logs through.
        env: extra environment variables for the processes a private Ray starts (Serve
            reads some of its settings there); the driver's own environment is unchanged.
        **kwargs: further ``ray.init`` arguments (``num_cpus``, ``runtime_env``...).

    Returns:
        Whether this call started a private Ray.
    """
    import ray

    if ray.is_initialized():
        catch_sigterm()
        return False
    options: dict[str, Any] = {
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.ERROR,
        **kwargs,
    }
    address = address or os.environ.get("RAY_ADDRESS")  # set inside Ray jobs
    if address:
        # A cluster's workers do not see this process's environment: the env modules the
        # user trusted here (--trust-module) travel in the job's runtime_env.
        trusted = worker_env_vars()
        if trusted and "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ:  # a job has its own
            runtime_env = dict(options.pop("runtime_env", None) or {})
            runtime_env["env_vars"] = {**trusted, **(runtime_env.get("env_vars") or {})}
            options["runtime_env"] = runtime_env
        ray.init(address=address, **options)
        catch_sigterm()
        return False
    _start_private(env or {}, options)
    catch_sigterm()
    return True


def _start_private(env: dict[str, str], options: dict[str, Any]) -> None:
    global _private
    import ray

    before = _children(os.getpid())
    try:
        with env_vars(env), loopback_only():
            # "local": a new private Ray even when `ray start` left one on this machine (a
            # bare ray.init() would join it).
            ray.init(address="local", include_dashboard=False, **options)
    finally:  # even when the start failed or was interrupted: what it started must end
        table = _process_table()
        roots = {pid: table[pid][1] for pid in _children(os.getpid(), table) - before}
        node_ip = ray.util.get_node_ip_address() if ray.is_initialized() else ""
        _private = PrivateRay(roots=roots, node_ip=node_ip, watchdog=_start_watchdog(roots))
        atexit.register(_shutdown_at_exit)  # runs before Ray's own exit hook (registered first)
    if node_ip != LOOPBACK:
        log.warning(
            "the private Ray listens on %s, not %s: this Ray version ignores %s=0; its "
            "ports may be reachable from the network (token authentication still applies)",
            node_ip,
            LOOPBACK,
            LOOPBACK_VARIABLE,
        )


@contextmanager
def env_vars(values: dict[str, str]) -> Iterator[None]:
    """While the block runs, ``os.environ`` has `values`; after it, what it had before.

    Each variable named in `values` gets its old value back, or is removed if it had
    none, even when the block raises.
    """
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@contextmanager
def loopback_only() -> Iterator[None]:
    """While Ray starts: its node address is 127.0.0.1, so every listener binds there.

    Sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` for the processes Ray starts and Ray's
    constant read from it in this process (evaluated when ray was first imported).

    Raises:
        RayStartError: this Ray version no longer has the setting.
    """
    from ray._private import ray_constants

    if getattr(ray_constants, "ENABLE_RAY_CLUSTERS_ENV_VAR", None) != LOOPBACK_VARIABLE or not (
        hasattr(ray_constants, "ENABLE_RAY_CLUSTER")
    ):
        raise RayStartError(
            f"this Ray ({_ray_version()}) has no {LOOPBACK_VARIABLE} setting: rl_platform "
            "cannot keep a private Ray on 127.0.0.1; use the Ray version rl_platform pins."
        )
    saved = ray_constants.ENABLE_RAY_CLUSTER
    with env_vars({LOOPBACK_VARIABLE: "0"}):
        ray_constants.ENABLE_RAY_CLUSTER = False
        try:
            yield
        finally:
            ray_constants.ENABLE_RAY_CLUSTER = saved


def _ray_version() -> str:
    import ray

    return f"ray {ray.__version__}"


def private_ray() -> PrivateRay | None:
    """The private Ray this process started and has not shut down, if any."""
    return _private


# --------------------------------------------------------------------------- stop


def shutdown_ray() -> None:
    """Disconnect from Ray; a private Ray is stopped and none of its processes remain.

    A joined cluster keeps running. For a private Ray, processes still there
    :data:`EXIT_GRACE_S` after ``ray.shutdown()`` get SIGTERM, then SIGKILL.
    """
    global _private
    import ray

    with signals_deferred():  # a Ctrl-C meanwhile would leave Ray half stopped
        private, _private = _private, None
        processes = private.processes() if private is not None else {}
        if ray.is_initialized():
            ray.shutdown()
        if private is None:
            return
        end_processes(processes)
        if private.watchdog is not None and private.watchdog.poll() is None:
            private.watchdog.terminate()
            private.watchdog.wait()


def _shutdown_at_exit() -> None:
    """At exit: :func:`shutdown_ray`, deaf to further Ctrl-C and SIGTERM (it is quick)."""
    if _private is not None:
        with signals_ignored():
            shutdown_ray()


def end_processes(processes: dict[int, int], grace_s: float = EXIT_GRACE_S) -> list[int]:
    """End the processes (pid -> start time) still alive: wait, then SIGTERM, then SIGKILL.

    A pid whose start time differs is another process now and is left alone.

    Returns:
        The pids that had to be signalled.
    """
    signalled: list[int] = []
    for sig, wait_s in ((None, grace_s), (signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 1.0)):
        alive = _alive(processes)
        if sig is not None:
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except OSError:
                    continue
                if pid not in signalled:
                    signalled.append(pid)
        deadline = time.monotonic() + wait_s
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = _alive(processes)
        if not alive:
            break
    return signalled


# --------------------------------------------------------------------------- signals


def catch_sigterm() -> None:
    """From now on SIGTERM does what Ctrl-C does at that moment (Ray's own exits at once).

    Under Tune's handler a first signal stops the run gracefully (Tune saves its
    state); a second one, or one outside Tune, raises ``KeyboardInterrupt``. Only in
    the main thread (signal handlers cannot be set elsewhere).
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    global _received
    _received = signal.SIGTERM
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def received_signal() -> int | None:
    """``signal.SIGTERM`` once one was received (after :func:`catch_sigterm`), else None."""
    return _received


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while a short last step runs (a stopped run's summary).

    The run is stopping already; a further Ctrl-C must not leave its summary half
    written. Only in the main thread; elsewhere the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a short critical step runs (writing a summary).

    A signal that arrives meanwhile is acted on when the block ends. Only in the main
    thread; elsewhere the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        if pending:
            os.kill(os.getpid(), pending[0])


# --------------------------------------------------------------------------- processes


def _process_table() -> dict[int, tuple[int, int]]:
    """Every live process: pid -> (parent pid, start time); empty without /proc."""
    table: dict[int, tuple[int, int]] = {}
    if not PROC.is_dir():
        return table
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            table[int(entry.name)] = stat
    return table


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, None if gone or a zombie."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = text[text.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def _children(pid: int, table: dict[int, tuple[int, int]] | None = None) -> set[int]:
    table = _process_table() if table is None else table
    return {child for child, (parent, _) in table.items() if parent == pid}


def _descendants(known: dict[int, int], table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """The live ones of `known` (same start time) and every descendant of them."""
    found = {pid: start for pid, start in known.items() if table.get(pid, (0, None))[1] == start}
    grew = True
    while grew:
        grew = False
        for pid, (parent, start) in table.items():
            if parent in found and pid not in found:
                found[pid] = start
                grew = True
    return found


def _alive(processes: dict[int, int]) -> list[int]:
    alive = []
    for pid, start in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            alive.append(pid)
    return alive


# --------------------------------------------------------------------------- watchdog


def _start_watchdog(roots: dict[int, int]) -> subprocess.Popen | None:
    """A process that ends the private Ray's processes if this one dies without doing so."""
    me = _stat(os.getpid())
    if me is None or not roots:
        return None
    spec = json.dumps({"driver": [os.getpid(), me[1]], "roots": roots})
    code = "import sys; from rl_platform.ray_session import watch; watch(sys.argv[1])"
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code, spec],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # no terminal signal reaches it; it outlives the driver
        )
    except OSError as err:
        log.warning("could not start the private Ray's watchdog: %s", err)
        return None


def watch(spec: str) -> None:
    """The watchdog's loop: track Ray's processes while the driver lives, then end them.

    Args:
        spec: JSON ``{"driver": [pid, start], "roots": {pid: start}}``.
    """
    data = json.loads(spec)
    driver, driver_start = data["driver"]
    tracked = {int(pid): int(start) for pid, start in data["roots"].items()}
    while True:
        stat = _stat(driver)
        if stat is None or stat[1] != driver_start:
            break
        tracked = _descendants(tracked, _process_table())
        time.sleep(WATCH_PERIOD_S)
    end_processes(tracked, grace_s=0.5)


def quiet_logs(verbose: bool) -> None:
    """Keep Ray's driver-side chatter out of the progress display unless asked for."""
    # Tune's console output would interleave with ours; ours shows the same figures.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray.rllib  # noqa: F401 (its import configures its loggers; quiet them after)

    if not verbose:
        for name in ("ray.rllib", "ray.tune", "ray.train"):
            logging.getLogger(name).setLevel(logging.ERROR)


def check_resources(
    experiment: ExperimentConfig, algo_config: AlgorithmConfig, autoscaling: bool
) -> None:
    """Refuse a run that asks for more CPUs/GPUs than the Ray cluster has.

    Tune would otherwise wait forever for resources that never come. On a cluster
    (``--address``) an autoscaler may add nodes, so there it is only a warning.
    """
    import ray

    wanted = algo_config.algo_class.default_resource_request(algo_config).required_resources
    have = ray.cluster_resources()
    short = {k: (v, have.get(k, 0.0)) for k, v in wanted.items() if v > have.get(k, 0.0) + 1e-9}
    if not short:
        return
    what = ", ".join(f"{v:g} {k} (the cluster has {h:g})" for k, (v, h) in short.items())
    message = (
        f"{experiment.name}: the run needs {what}: one per env runner, learner and the "
        "driver. Lower resources.num_env_runners, resources.num_learners or their CPUs "
        "(resources.num_cpus_per_env_runner, resources.num_cpus_per_learner)."
    )
    if autoscaling:
        log.warning("%s Waiting for the cluster to grow.", message)
        return
    raise ConfigError(message)


def start_checked(
    experiment: ExperimentConfig,
    algo_config: AlgorithmConfig,
    address: str | None,
    verbose: bool,
    *,
    discard: Path | None = None,
) -> None:
    """Start (or join) Ray, then :func:`check_resources`.

    `discard`: the directory made for this run before Ray started; a refusal removes it
    (nothing ran) before the ConfigError goes on.
    """
    import shutil

    init_ray(address, verbose)
    try:
        check_resources(experiment, algo_config, autoscaling=address is not None)
    except ConfigError:
        if discard is not None:
            shutil.rmtree(discard, ignore_errors=True)
        raise
