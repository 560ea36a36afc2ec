"""Progress of a run without Ray: k/N, time left, the run directory first, paths on one line."""

import io
import math
from pathlib import Path

import pytest

from rl_platform import ray_session, training
from rl_platform.progress import (
    IterationRow,
    RunStart,
    StreamProgress,
    compact_line,
    format_duration,
    progress_of,
)
from rl_platform.stopping import ENV_STEPS_KEY
from rl_platform.training import TrainResult

LONG = Path("/home/someone/projects/rl/runs/quickstart/20261206-075300/trial/checkpoint_000004")


def row(iteration=5, env_steps=10_000, time_total_s=20.0, **kwargs):
    return IterationRow(iteration, env_steps, 1.5, 500.0, time_total_s, **kwargs)


def test_k_of_n_and_time_left_follow_the_stop_section():
    # 5 of 25 iterations in 20 s: 4 s per iteration, 20 to go
    assert progress_of({"training_iteration": 25}, row()) == ("iter", 5.0, 25.0, 80.0)
    # a stop on env steps: 10,000 of 50,000 in 20 s
    assert progress_of({ENV_STEPS_KEY: 50_000}, row()) == ("env steps", 10_000, 50_000, 80.0)
    # the nearest stop wins; a time stop counts down
    both = {"training_iteration": 25, "time_total_s": 30.0}
    assert progress_of(both, row()) == ("iter", 5.0, 25.0, 10.0)
    # a stop on the return cannot be foreseen; nothing measured yet neither
    assert progress_of({"env_runners/episode_return_mean": 5.0}, row())[3] is None
    assert progress_of({"training_iteration": 25}, row(time_total_s=0.0))[3] is None
    # past the stop (a resumed run trained longer): nothing left, never negative
    assert progress_of({"training_iteration": 3}, row())[3] == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (math.inf, "?"), (0.4, "0s"), (45.2, "45s"), (185, "3m 05s"), (7620, "2h 07m")],
)
def test_time_left_is_formatted_for_people(seconds, text):
    assert format_duration(seconds) == text


def test_the_table_shows_k_of_n_and_time_left_once_it_knows_the_stop(monkeypatch):
    from rl_platform.cli.output import console
    from rl_platform.cli.train import ProgressTable, SeedsProgress

    monkeypatch.setattr(console, "width", 80)
    table = ProgressTable()
    steps = SeedsProgress()
    with console.capture() as captured:
        table.start(RunStart(Path("runs/x/1"), {"training_iteration": 25}))
        table(row())
        steps.start(RunStart(Path("runs/x/2"), {ENV_STEPS_KEY: 50_000}, seeds=(0, 1)))
        steps(row(seed=1))
    lines = captured.get().splitlines()
    header = lines.index(next(line for line in lines if line.split()[:1] == ["iter"]))
    assert lines[header].split()[-1] == "left"
    figures = ["1.500", "—", "500", "20.0s", "1m", "20s"]
    assert lines[header + 1].split() == ["5/25", "10,000", *figures]
    assert lines[-1].split() == ["1", "5", "10,000/50,000", *figures]


def test_without_a_stop_the_table_keeps_its_old_columns():
    from rl_platform.cli.output import console
    from rl_platform.cli.train import ProgressTable

    with console.capture() as captured:
        ProgressTable()(row())
    header, line = captured.get().splitlines()
    assert "left" not in header and line.split() == ["5", "10,000", "1.500", "—", "500", "20.0s"]


def test_paths_are_printed_whole_at_80_columns(monkeypatch):
    from rl_platform.cli.output import console
    from rl_platform.cli.train import print_run_start, print_summary

    monkeypatch.setattr(console, "width", 80)
    result = TrainResult(LONG.parent.parent, "interrupted", 4, 800, 1.0, best_checkpoint=LONG)
    with console.capture() as captured:
        print_run_start(RunStart(LONG.parent.parent, {"training_iteration": 4}))
        print_summary(result)
    lines = captured.get().splitlines()
    assert any(str(LONG) in line for line in lines)  # the best checkpoint, on one line
    run_dir = str(LONG.parent.parent)
    assert f"rlp monitor {run_dir} --follow" in lines[1]
    assert f"tensorboard --logdir {run_dir}" in lines[2]
    assert any(line.endswith(f"rlp train --resume {run_dir}") for line in lines)


def test_the_python_api_prints_the_run_directory_then_a_line_per_iteration():
    stream = io.StringIO()
    sink = StreamProgress(stream)
    sink.start(RunStart(Path("runs/q/1"), {"training_iteration": 25}))
    sink(row())
    first, second = stream.getvalue().splitlines()
    assert first == "rl_platform: training in runs/q/1"
    assert second == compact_line(row(), {"training_iteration": 25})
    assert second.startswith("iter 5/25  env steps 10,000  return 1.500")
    assert second.endswith("left 1m 20s")


def test_progress_true_is_the_stream_printer_and_false_silences_it():
    sink, start = training._progress_hooks(True, None)
    assert isinstance(sink, StreamProgress) and start == sink.start
    assert training._progress_hooks(False, None) == (None, None)
    mine = [].append
    assert training._progress_hooks(mine, None) == (mine, None)


@pytest.fixture
def fake_ray(monkeypatch):
    """training.train up to Ray: init_ray and check_resources record their turn."""
    events = []
    monkeypatch.setattr(ray_session, "init_ray", lambda *a, **k: events.append("init_ray"))
    return events


def test_train_announces_the_run_directory_before_ray_starts(
    fake_ray, monkeypatch, tmp_path, quickstart_path
):
    def no_cpus(*args, **kwargs):
        fake_ray.append("check_resources")
        raise training.ConfigError("the run needs 2 CPU")

    monkeypatch.setattr(ray_session, "check_resources", no_cpus)
    starts = []

    def on_start(start):
        fake_ray.append("on_start")
        assert (start.run_dir / "config.yaml").is_file()  # made before it is announced
        starts.append(start)

    with pytest.raises(training.ConfigError, match="2 CPU"):
        training.train(quickstart_path, output=tmp_path, progress=False, on_start=on_start)
    assert fake_ray == ["on_start", "init_ray", "check_resources"]
    (start,) = starts
    assert start.stop == {"training_iteration": 25} and not start.resumed
    assert start.run_dir.parent == tmp_path / "quickstart"
    assert not start.run_dir.exists()  # refused before it ran: no run directory left


def test_rlp_train_prints_what_starts_then_the_run_directory_then_rows(
    cli, monkeypatch, tmp_path, quickstart_path
):
    run_dir = tmp_path / "quickstart" / "20261206-075300"

    def fake_train(source, overrides, *, progress, notice, on_start, **kwargs):
        notice("sampler: batched (10 env copies per runner)")
        on_start(RunStart(run_dir, {"training_iteration": 2}))
        print("(Ray starts here)")
        progress(row(iteration=1, time_total_s=3.0))
        progress(row(iteration=2, time_total_s=6.0))
        return TrainResult(run_dir, "finished", 2, 800, 1.0, best_checkpoint=run_dir / "c")

    monkeypatch.setattr(training, "train", fake_train)
    result = cli("train", quickstart_path, "--output", tmp_path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    order = [
        out.index("rlp train: training quickstart: mappo on trading until training_iteration 25"),
        out.index("sampler: batched"),
        out.index(f"run directory: {run_dir}"),
        out.index(f"rlp monitor {run_dir} --follow"),
        out.index("(Ray starts here)"),
        out.index("return mean"),
        out.index("1/2"),
        out.index("2/2"),
        out.index("best checkpoint"),
    ]
    assert order == sorted(order)


def test_an_unknown_env_names_each_registered_id_once(cli, make_experiment):
    from rl_platform import registry

    bad = make_experiment("nosuch_env")
    for result in (cli("train", bad), cli("envs", "check", "nosuch_env")):
        assert result.exit_code == 2
        message = result.stderr
        assert message.count("error:") == 1
        for env_id in registry.ENVS:
            assert message.count(f" {env_id},") + message.count(f" {env_id}.") == 1, env_id


def test_a_seed_group_is_announced_with_a_seed_to_monitor():
    from rl_platform.cli.output import console
    from rl_platform.cli.train import print_run_start

    with console.capture() as captured:
        print_run_start(RunStart(Path("runs/g/1"), {"training_iteration": 4}, seeds=(3, 5)))
    lines = captured.get().splitlines()
    assert lines[0] == "group directory: runs/g/1"
    assert lines[1] == "  watch it: rlp monitor runs/g/1/seed_3 --follow"
    assert lines[2].split() == ["tensorboard", "--logdir", "runs/g/1"]


def test_the_sweep_clock_counts_trials_and_extrapolates_the_pace():
    from rl_platform.progress import SweepClock

    clock = SweepClock(4, {"training_iteration": 10})
    assert clock.seconds_left() is None  # nothing measured yet
    clock.iteration("a", 5, elapsed_s=10.0)
    clock.iteration("b", 5, elapsed_s=10.0)
    assert clock.trials_done == 0
    assert clock.seconds_left() == pytest.approx(30.0)  # 10 of 40 iterations in 10 s
    clock.iteration("a", 7, elapsed_s=12.0)
    clock.finished("a", elapsed_s=12.0)  # stopped early by the scheduler: counts as 10
    assert clock.trials_done == 1
    assert clock.seconds_left() == pytest.approx(25 * 12.0 / 15)
    clock.finished("c", elapsed_s=14.0)  # failed before its first result
    assert clock.trials_done == 2
    assert clock.seconds_left() == pytest.approx(15 * 14.0 / 25)

    by_trials = SweepClock(3, {"time_total_s": 60.0})  # no iteration stop: trials count
    by_trials.iteration("a", 4, elapsed_s=5.0)
    assert by_trials.seconds_left() is None
    by_trials.finished("a", elapsed_s=6.0)
    assert by_trials.seconds_left() == pytest.approx(12.0)


def test_the_python_apis_sweep_printer_names_the_sweep_then_counts_trials(tmp_path):
    import io

    from rl_platform.progress import SweepStart, SweepStreamProgress
    from rl_platform.tuning.trial import TrialEvent

    out = io.StringIO()
    printer = SweepStreamProgress(out)
    printer.start(SweepStart(tmp_path / "sweep-1", 2, {"training_iteration": 2}))
    printer(TrialEvent("start", "a", params={"lr": 0.001}))
    for trial in ("a", "b"):
        for k in (1, 2):
            printer(TrialEvent("result", trial, "env_runners/episode_return_mean", "", k, 1.5))
        printer(TrialEvent("complete", trial, "env_runners/episode_return_mean", "complete", 2))
    lines = out.getvalue().splitlines()
    assert lines[0] == f"rl_platform: sweeping 2 trials in {tmp_path / 'sweep-1'}"
    assert lines[1] == "trial a started: lr=0.001"
    assert "iter 1  episode_return_mean 1.500" in lines[2] and "trials 0/2" in lines[2]
    assert lines[-1].startswith("trial b complete after 2 iterations")
    assert "trials 2/2  left 0s" in lines[-1]
