"""Run and sweep directories: made without races, refused while another process holds them."""

import multiprocessing
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rl_platform.cli import app
from rl_platform.runs import (
    CONFIG_FILE,
    LOCK_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    TRIAL_DIR,
    DirectoryInUseError,
    DirectoryLock,
    RunDir,
    check_free,
    hold,
    holds_directories,
    new_run_dir,
    read_summary,
)

ROOT = Path(__file__).resolve().parents[2]
SAME_SECOND = datetime(2026, 12, 1, 12, 0, 0)


def _make_dir(output, barrier, queue):
    barrier.wait()  # every process calls mkdir at the same moment, with the same stamp
    queue.put(str(new_run_dir(output, "exp", prefix="sweep-", now=SAME_SECOND)))


def test_processes_started_in_the_same_second_get_their_own_directories(tmp_path):
    context = multiprocessing.get_context("fork")
    count = 8
    barrier, queue = context.Barrier(count), context.Queue()
    procs = [
        context.Process(target=_make_dir, args=(tmp_path, barrier, queue)) for _ in range(count)
    ]
    for proc in procs:
        proc.start()
    made = sorted(queue.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    stamp = "sweep-20261201-120000"
    expected = [stamp] + [f"{stamp}-{n}" for n in range(2, count + 1)]
    assert sorted(Path(p).name for p in made) == sorted(expected)
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == sorted(expected)


HOLDER = """
import sys
from rl_platform.runs import DirectoryLock
lock = DirectoryLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin or kills us
"""


@pytest.fixture
def held(tmp_path):
    """A directory locked by another live process; yields (directory, that process)."""
    directory = tmp_path / "run"
    directory.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    yield directory, proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def test_a_directory_in_use_is_refused_with_the_holders_pid_until_it_dies(held):
    directory, holder = held
    with pytest.raises(DirectoryInUseError, match=f"in use by pid {holder.pid}"):
        DirectoryLock(directory).acquire()
    holder.send_signal(signal.SIGKILL)  # no clean-up: the kernel drops the lock
    holder.wait(timeout=30)
    lock = DirectoryLock(directory)
    lock.acquire()
    assert (directory / LOCK_FILE).read_text().strip() == str(os.getpid())
    lock.release()


def test_checking_whether_a_directory_is_free_writes_nothing(held, tmp_path):
    directory, holder = held
    lock_file = directory / LOCK_FILE
    stamp = (lock_file.read_text(), lock_file.stat().st_mtime_ns)
    with pytest.raises(DirectoryInUseError, match=f"in use by pid {holder.pid}"):
        check_free(directory)
    assert (lock_file.read_text(), lock_file.stat().st_mtime_ns) == stamp
    free = tmp_path / "free"
    free.mkdir()
    check_free(free)
    assert list(free.iterdir()) == []  # no lock file made


def test_directories_held_by_an_entry_point_are_released_when_it_ends(tmp_path):
    @holds_directories
    def run(directory: Path, fail: bool) -> bool:
        hold(directory)
        with pytest.raises(DirectoryInUseError):  # even this process cannot take it twice
            DirectoryLock(directory).acquire()
        if fail:
            raise RuntimeError("the run failed")
        return True

    assert run(tmp_path, fail=False)
    with pytest.raises(RuntimeError, match="the run failed"):
        run(tmp_path, fail=True)
    lock = DirectoryLock(tmp_path)
    lock.acquire()  # free again after either ending
    lock.release()
    with pytest.raises(RuntimeError, match="holds_directories"):
        hold(tmp_path)


def _resumable(directory: Path, config_name: str, config: dict) -> None:
    """The files a resume checks before it takes the directory (no Ray state inside)."""
    (directory / config_name).write_text(yaml.safe_dump(config))
    (directory / "experiment_state-2026-12-01_12-00-00.json").write_text("{}")
    (directory / "tuner.pkl").write_bytes(b"")


def test_resuming_a_run_or_sweep_another_process_holds_exits_2_naming_its_pid(held):
    directory, holder = held
    runner = CliRunner()
    experiment = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())
    _resumable(directory, "config.yaml", experiment)
    done = runner.invoke(app, ["train", "--resume", str(directory)], env={"COLUMNS": "300"})
    assert done.exit_code == 2, done.output
    assert f"in use by pid {holder.pid}" in done.output

    sweep = {**experiment, "tune": {"search_space": {"gamma": {"uniform": [0.9, 0.99]}}}}
    _resumable(directory, "sweep.yaml", sweep)
    done = runner.invoke(app, ["tune", "--resume", str(directory)], env={"COLUMNS": "300"})
    assert done.exit_code == 2, done.output
    assert f"in use by pid {holder.pid}" in done.output
    assert (directory / LOCK_FILE).read_text().strip() == str(holder.pid)  # left as it was


def test_a_run_dir_names_its_files_and_reads_and_writes_its_summary(tmp_path):
    run = RunDir(str(tmp_path))  # a str is taken as a path
    assert run.path == tmp_path
    assert run.config == tmp_path / CONFIG_FILE
    assert run.summary == tmp_path / SUMMARY_FILE
    assert run.metrics == tmp_path / METRICS_FILE
    assert run.trial == tmp_path / TRIAL_DIR
    assert run.lock == tmp_path / LOCK_FILE == DirectoryLock(tmp_path).path
    assert (run.sweep.name, run.trials_table.name, run.best.name, run.plots.name) == (
        "sweep.yaml",
        "trials.csv",
        "best.yaml",
        "plots",
    )
    assert run.read_summary() is None
    run.summary.write_text("{not json")
    assert run.read_summary() is None
    run.write_summary({"status": "finished", "iterations": 3})
    assert run.read_summary() == read_summary(tmp_path) == {"status": "finished", "iterations": 3}
    assert not run.has_tune_state()
    (tmp_path / "tuner.pkl").write_bytes(b"")
    assert not run.has_tune_state()
    (tmp_path / "experiment_state-2026.json").write_text("{}")
    assert run.has_tune_state()
