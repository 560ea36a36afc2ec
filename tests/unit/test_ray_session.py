"""ray_session without Ray: process bookkeeping, ending leftovers, SIGTERM as Ctrl-C."""

import os
import signal
import subprocess
import sys
import time

import pytest

from rl_platform import ray_session

linux_only = pytest.mark.skipif(not ray_session.PROC.is_dir(), reason="needs /proc")


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own Ctrl-C handler for each test: one started in this process (Tune's, in an
    integration test run before) may still be installed."""
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, saved)


def test_descendants_follow_the_tree_and_drop_reused_pids():
    # pid -> (parent, start time)
    table = {10: (1, 100), 11: (10, 101), 12: (11, 102), 13: (1, 103), 20: (1, 999)}
    found = ray_session._descendants({10: 100, 20: 200}, table)
    assert found == {10: 100, 11: 101, 12: 102}  # 20 started at another time: not ours


def test_a_known_process_stays_tracked_after_its_parent_dies():
    # an agent re-parented to init when its raylet died is still tracked by its pid
    assert ray_session._descendants({11: 101}, {11: (1, 101)}) == {11: 101}


@linux_only
def test_end_processes_terminates_what_is_left_and_spares_a_reused_pid():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = ray_session._stat(sleeper.pid)[1]
        spared = ray_session.end_processes({sleeper.pid: start + 1}, grace_s=0.1)
        assert spared == [] and sleeper.poll() is None
        signalled = ray_session.end_processes({sleeper.pid: start}, grace_s=0.1)
        assert signalled == [sleeper.pid]
        assert sleeper.wait(timeout=10) == -signal.SIGTERM
    finally:
        sleeper.kill()
        sleeper.wait()


@linux_only
def test_the_process_table_sees_this_process_and_its_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        table = ray_session._process_table()
        assert table[os.getpid()][0] == os.getppid()
        assert child.pid in ray_session._children(os.getpid(), table)
    finally:
        child.kill()
        child.wait()


def test_sigterm_acts_as_ctrl_c_and_is_remembered(monkeypatch):
    saved = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(ray_session, "_received", None)
    try:
        ray_session.catch_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode
        assert ray_session.received_signal() == signal.SIGTERM
        calls = []
        previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # under a SIGINT handler (Tune's): it runs
            time.sleep(0.1)
        finally:
            signal.signal(signal.SIGINT, previous)
        assert calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGTERM, saved)


def test_signals_are_held_while_a_summary_is_written():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with ray_session.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            done.append("written")  # not interrupted half-way
        time.sleep(5)
    assert done == ["written"]


def test_joining_a_cluster_carries_the_trusted_env_modules_to_its_workers(monkeypatch):
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray_session, "catch_sigterm", lambda: None)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.setenv("RLP_TRUSTED_MODULES", "my_envs")
    started = ray_session.init_ray("127.0.0.1:6379", runtime_env={"env_vars": {"PYTHONPATH": "/x"}})
    assert started is False
    assert calls[0]["runtime_env"]["env_vars"] == {
        "RLP_TRUSTED_MODULES": "my_envs",
        "PYTHONPATH": "/x",
    }
    # inside a Ray job the job's own runtime_env carries them (rlp submit)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    ray_session.init_ray("auto")
    assert "runtime_env" not in calls[1]
