"""Anomaly rules, the monitor row, the anomaly log and the dashboard (no Ray)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from rl_platform.monitoring import (
    ANOMALY_KINDS,
    Anomaly,
    AnomalyDetector,
    AnomalyLog,
    MonitoringSpec,
    RunMonitor,
    follow,
    monitor_row,
    read_anomalies,
    read_results,
    render_dashboard,
)

QUICKSTART_RUN = Path("/tmp/qs2/quickstart/20261127-115537")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_result(
    iteration: int,
    ret: float | None = 10.0,
    entropy: dict[str, float] | None = None,
    steps_per_iter: float = 1000.0,
    time_s: float = 1.0,
    learner: dict[str, float] | None = None,
) -> dict:
    """A nested result shaped like RLlib's (only the keys the monitor reads)."""
    runners = {"num_env_steps_sampled": steps_per_iter}
    if ret is not None:
        runners |= {
            "episode_return_mean": ret,
            "episode_return_min": ret - 1,
            "episode_return_max": ret + 1,
        }
    learners = {
        "__all_modules__": {"num_env_steps_trained": 100, "num_trainable_parameters": math.nan}
    }
    for mid, value in (entropy or {"shared": 1.0}).items():
        learners[mid] = {
            "entropy": value,
            "policy_loss": 0.1,
            "vf_loss": 0.5,
            "mean_kl_loss": 0.01,
            "num_trainable_parameters": math.nan,  # RLlib reports this as NaN: benign
            **(learner or {}),
        }
    return {
        "training_iteration": iteration,
        "time_this_iter_s": time_s,
        "num_env_steps_sampled_lifetime": steps_per_iter * iteration,
        "env_runners": runners,
        "learners": learners,
    }


def feed(detector: AnomalyDetector, results: list[dict]) -> list[Anomaly]:
    return [a for r in results for a in detector.observe(r)]


def series(values) -> list[dict]:
    return [make_result(i + 1, float(v)) for i, v in enumerate(values)]


def test_steady_series_has_no_anomaly():
    rng = np.random.default_rng(0)
    assert feed(AnomalyDetector(), series(10 + 0.3 * rng.standard_normal(200))) == []


def test_reward_drop_gives_one_collapse_at_the_rule_iteration():
    rng = np.random.default_rng(1)
    values = np.r_[np.full(50, 10.0), np.full(60, 2.0)] + 0.1 * rng.standard_normal(110)
    found = feed(AnomalyDetector(), series(values))
    assert [a.kind for a in found] == ["reward_collapse"]
    # Rule: mean of the last 10 < earlier - 0.5 * |earlier| (earlier ~ 10): with k of the
    # last 10 at ~2, 10 - 0.8 k < 5 first holds at k = 7, i.e. iteration 57.
    assert found[0].iteration == 57
    assert found[0].value < found[0].threshold
    assert "57" in found[0].message


def test_collapse_on_negative_returns_means_getting_worse():
    detector = AnomalyDetector()
    values = [-10.0] * 50 + [-20.0] * 20
    found = feed(detector, series(values))
    assert [a.kind for a in found] == ["reward_collapse"]
    assert found[0].threshold == pytest.approx(-15.0)
    # An improvement from -10 to -2 is no collapse.
    assert feed(AnomalyDetector(), series([-10.0] * 50 + [-2.0] * 20)) == []


def test_noisy_series_is_unstable():
    rng = np.random.default_rng(2)
    values = np.r_[10 + 0.2 * rng.standard_normal(30), 10 + 40 * rng.standard_normal(30)]
    found = feed(AnomalyDetector(MonitoringSpec(collapse_ratio=0.01)), series(values))
    kinds = {a.kind for a in found}
    assert "instability" in kinds
    first = next(a for a in found if a.kind == "instability")
    assert first.iteration > 30 and first.value > first.threshold


def test_nan_in_learner_loss_names_the_key():
    detector = AnomalyDetector()
    results = [make_result(i) for i in range(1, 4)]
    results.append(make_result(4, learner={"vf_loss": math.nan}))
    found = feed(detector, results)
    assert [(a.kind, a.key, a.module) for a in found] == [
        ("nan", "learners/shared/vf_loss", "shared")
    ]
    assert "learners/shared/vf_loss" in found[0].message


def test_inf_episode_return_is_caught():
    found = feed(AnomalyDetector(), series([1.0, 2.0, math.inf]))
    assert {a.key for a in found} >= {"env_runners/episode_return_mean"}
    assert all(a.kind == "nan" and a.iteration == 3 for a in found)


def test_entropy_collapse_per_module():
    results = [
        make_result(i, entropy={"a": 1.0, "b": 1.0 if i < 5 else 0.001}) for i in range(1, 10)
    ]
    found = feed(AnomalyDetector(), results)
    assert [(a.kind, a.module, a.iteration) for a in found] == [("entropy_collapse", "b", 5)]
    assert found[0].threshold == pytest.approx(0.01)
    # Off when the floor is None; skipped for modules without entropy.
    assert feed(AnomalyDetector(MonitoringSpec(entropy_floor=None)), results) == []


def test_stalled_throughput():
    results = [make_result(i, time_s=1.0) for i in range(1, 8)]
    results.append(make_result(8, time_s=20.0))  # 1000 steps in 20 s: 5% of the median
    found = feed(AnomalyDetector(), results)
    assert [(a.kind, a.iteration) for a in found] == [("stalled_throughput", 8)]
    assert found[0].value == pytest.approx(50.0)
    assert found[0].threshold == pytest.approx(200.0)


def test_reported_once_per_onset_and_rearmed_after_recovery():
    entropies = [1.0, 1.0, 0.001, 0.001, 0.001, 1.0, 0.001, 0.001]
    results = [make_result(i + 1, entropy={"m": e}) for i, e in enumerate(entropies)]
    found = feed(AnomalyDetector(), results)
    assert [a.iteration for a in found] == [3, 7]


def test_flat_results_work_like_nested():
    flat = {
        "training_iteration": 4,
        "learners/shared/policy_loss": math.nan,
        "env_runners/episode_return_mean": 1.0,
    }
    found = AnomalyDetector().observe(flat)
    assert [a.key for a in found] == ["learners/shared/policy_loss"]


def test_spec_rejects_unknown_fields_and_kinds():
    with pytest.raises(ValidationError):
        MonitoringSpec(colapse_ratio=0.3)
    with pytest.raises(ValidationError):
        MonitoringSpec(stop_on=["explosion"])
    assert set(MonitoringSpec(stop_on=list(ANOMALY_KINDS)).stop_on) == set(ANOMALY_KINDS)


def test_monitor_row_per_module_figures():
    result = make_result(3, entropy={"a": 0.5, "b": 0.7})
    result["env_runners"]["rewards"] = {"profit": 1.5}
    result["curriculum"] = {"level": 2, "level_name": "hard", "score": 0.8}
    result["evaluation"] = {"score": 0.9, "iteration": 3, "level": "hard"}
    row = monitor_row(result)
    assert row["iteration"] == 3
    assert row["episode_return_mean"] == 10.0
    assert row["entropy/a"] == 0.5 and row["entropy/b"] == 0.7
    assert row["policy_loss/a"] == 0.1 and row["mean_kl_loss/b"] == 0.01
    assert row["reward/profit"] == 1.5
    assert row["curriculum/level"] == 2 and row["evaluation/score"] == 0.9
    assert row["env_steps_per_s"] == 1000.0
    assert all(isinstance(v, float) for v in row.values())
    assert not any(k.startswith("num_") or "__all_modules__" in k for k in row)
    result["evaluation"]["iteration"] = 2  # carried forward from an earlier iteration
    assert "evaluation/score" not in monitor_row(result)


def test_anomaly_log_round_trip(tmp_path):
    anomalies = [
        Anomaly("nan", 3, "learners/m/vf_loss is nan.", math.nan, math.inf, "m", "k"),
        Anomaly("reward_collapse", 57, "dropped", 2.0, 5.0),
    ]
    log = AnomalyLog(tmp_path)
    log.append(anomalies[:1])
    log.append([])
    log.append(anomalies[1:])
    lines = (tmp_path / "anomalies.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)
    back = read_anomalies(tmp_path)
    assert back[1] == anomalies[1]
    assert back[0].kind == "nan" and math.isnan(back[0].value) and back[0].threshold == math.inf
    assert read_anomalies(tmp_path / "missing") == []


def test_run_monitor_observes_each_iteration_once_and_requests_stop(tmp_path):
    monitor = RunMonitor(MonitoringSpec(stop_on=["nan"]), tmp_path)
    bad = make_result(1, learner={"policy_loss": math.inf})
    first = monitor.observe(bad)
    assert monitor.observe(bad) == first  # the stopper and the callback both call it
    assert len(read_anomalies(tmp_path)) == 1
    assert monitor.stop_reason is not None and monitor.stop_reason.kind == "nan"


def write_run(run_dir: Path, results: list[dict], partial_tail: bool = True) -> None:
    (run_dir / "trial").mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in results)
    if partial_tail:
        text += '{"training_iteration": 99, "env_ru'  # a live run mid-write
    (run_dir / "trial" / "result.json").write_text(text)


def test_render_dashboard_on_fabricated_run(tmp_path):
    rng = np.random.default_rng(3)
    results = []
    for i, v in enumerate(
        np.r_[np.full(50, 10.0), np.full(15, 2.0)] + 0.1 * rng.standard_normal(65)
    ):
        result = make_result(i + 1, float(v), entropy={"a": 1.0, "b": 0.5})
        result["env_runners"]["rewards"] = {"profit": float(v) / 2, "risk": -0.1}
        result["curriculum"] = {"level": i // 20, "score": 0.5}
        results.append(result)
    write_run(tmp_path, results)
    assert len(read_results(tmp_path)) == 65
    AnomalyLog(tmp_path).append(
        [Anomaly("reward_collapse", 57, "<script>alert('x')</script> & more", 2.0, 5.0)]
    )
    plots = render_dashboard(tmp_path)
    expected = {"returns", "losses", "exploration", "throughput", "rewards", "curriculum"}
    assert expected <= set(plots)
    for name, path in plots.items():
        assert path.parent == tmp_path / "monitor"
        if name != "index":
            assert path.read_bytes().startswith(PNG_MAGIC)
    page = plots["index"].read_text()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert page.count("data:image/png;base64,") == len(plots) - 1


def test_render_dashboard_replays_when_no_log(tmp_path):
    values = [10.0] * 50 + [2.0] * 10
    write_run(tmp_path, series(values), partial_tail=False)
    page = render_dashboard(tmp_path, out_dir=tmp_path / "out")["index"].read_text()
    assert "reward_collapse" in page and "replayed" in page


def test_follow_stops_when_the_run_finishes(tmp_path):
    write_run(tmp_path, series([1.0, 2.0, 3.0]))
    (tmp_path / "summary.json").write_text("{}")
    updates = []
    plots = follow(tmp_path, interval_s=0.01, on_update=updates.append, timeout_s=5)
    assert len(updates) == 1 and plots["index"].exists()


def test_follow_times_out_on_a_live_run(tmp_path):
    write_run(tmp_path, series([1.0, 2.0]))
    updates = []
    follow(tmp_path, interval_s=0.01, on_update=updates.append, timeout_s=0.05)
    assert len(updates) == 1  # rendered once; the file did not grow


@pytest.mark.skipif(not QUICKSTART_RUN.exists(), reason="no quickstart run on this machine")
def test_render_dashboard_on_real_run(tmp_path):
    plots = render_dashboard(QUICKSTART_RUN, out_dir=tmp_path)
    assert {"returns", "losses", "exploration", "throughput", "index"} <= set(plots)
    assert plots["losses"].read_bytes().startswith(PNG_MAGIC)
    rows = [monitor_row(r) for r in read_results(QUICKSTART_RUN)]
    assert all("entropy/shared" in row and "episode_return_mean" in row for row in rows)
    # The benign NaN parameter counts of a healthy run raise nothing.
    detector = AnomalyDetector()
    assert not [
        a for r in read_results(QUICKSTART_RUN) for a in detector.observe(r) if a.kind == "nan"
    ]


def test_dashboard_ticks_whole_iterations_and_labels_every_panel(tmp_path, monkeypatch):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from rl_platform.monitoring import dashboard

    figures = {}
    real_save = dashboard._save
    monkeypatch.setattr(
        dashboard,
        "_save",
        lambda fig, path: figures.setdefault(path.stem, fig) and real_save(fig, path),
    )
    write_run(tmp_path, series([1.0, 2.0, 3.0, 2.5]), partial_tail=False)  # 4 iterations
    render_dashboard(tmp_path)
    assert {"returns", "losses", "exploration", "throughput"} <= set(figures)
    for name, fig in figures.items():
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)
            assert ax.get_ylabel(), (name, ax.get_title())
    losses = {ax.get_title(): ax.get_ylabel() for ax in figures["losses"].axes}
    assert losses == {"policy loss": "policy loss", "value loss": "value loss", "KL": "KL"}


def test_flatten_result_joins_nested_keys_and_keeps_flat_ones():
    from rl_platform.monitoring import flatten_result

    nested = {"a": {"b": {"c": 1}, "d": [1, 2]}, "e/f": 3.0, "g": {}, "h": None}
    assert flatten_result(nested) == {"a/b/c": 1, "a/d": [1, 2], "e/f": 3.0, "h": None}
    assert nested["a"] == {"b": {"c": 1}, "d": [1, 2]}  # the input is left as it was


def test_monitor_frame_is_indexed_by_iteration_and_keeps_gaps():
    from rl_platform.monitoring.io import monitor_frame

    results = [make_result(3, 1.0), make_result(4, None), make_result(5, 2.0)]
    frame = monitor_frame(results)
    assert list(frame.index) == [3, 4, 5]
    assert frame["episode_return_mean"].isna().tolist() == [False, True, False]
    assert list(monitor_frame([{"env_runners": {"episode_return_mean": 1.0}}] * 2).index) == [1, 2]


def test_rolling_mean_skips_non_finite_returns(tmp_path, monkeypatch):
    from rl_platform.monitoring import dashboard

    figures = {}
    real_save = dashboard._save
    monkeypatch.setattr(
        dashboard,
        "_save",
        lambda fig, path: figures.setdefault(path.stem, fig) and real_save(fig, path),
    )
    write_run(tmp_path, series([1.0, math.nan, 3.0, math.inf, 5.0, 7.0]), partial_tail=False)
    render_dashboard(tmp_path, spec=MonitoringSpec(window=3))
    (line,) = [
        ln for ln in figures["returns"].axes[0].lines if ln.get_label() == "rolling mean (3)"
    ]
    assert list(line.get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(line.get_ydata()) == [1.0, 1.0, 2.0, 3.0, 4.0, 6.0]


@pytest.mark.parametrize("declared", [("stay", "up", "down"), None])
def test_action_panel_uses_the_envs_action_names(tmp_path, monkeypatch, declared):
    from rl_platform import registry
    from rl_platform.monitoring import dashboard

    class Core:
        action_names = declared

    class Env:
        core_cls = Core

    monkeypatch.setattr(
        registry, "get_env", lambda env_id: registry.EnvEntry(env_id, "test env", Env)
    )
    figures = {}
    real_save = dashboard._save
    monkeypatch.setattr(
        dashboard,
        "_save",
        lambda fig, path: figures.setdefault(path.stem, fig) and real_save(fig, path),
    )
    results = series([1.0, 2.0])
    for r in results:
        r["env_runners"]["actions"] = {"shared": {"p_0": 0.2, "p_1": 0.5, "p_2": 0.3}}
    write_run(tmp_path, results, partial_tail=False)
    (tmp_path / "config.yaml").write_text("env:\n  id: some_env\n")
    render_dashboard(tmp_path)
    labels = {line.get_label() for line in figures["actions"].axes[0].lines}
    names = declared or ("a0", "a1", "a2")
    assert labels == {f"shared: P({name})" for name in names}


def test_action_labels_name_means_and_keep_other_stats():
    from rl_platform.monitoring.dashboard import _action_label

    assert _action_label("actions/m/mean_1", ["x", "y"]) == "m: mean y"
    assert _action_label("actions/m/std_3", ["x", "y"]) == "m: std a3"
    assert _action_label("actions/m/saturated", None) == "m: saturated"
    assert _action_label("actions/m", None) == "actions/m"


def write_table(run_dir: Path, results: list[dict], tail: str = "") -> None:
    """metrics.csv as the driver writes it: the progress columns, then the monitor's."""
    from rl_platform.monitoring import append_table_row, table_row

    run_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        base = {"iteration": r["training_iteration"], "env_steps": 0, "level": "easy"}
        profit = r["env_runners"].get("rewards", {}).get("profit", math.nan)
        score = r.get("evaluation", {}).get("score", math.nan)
        base |= {"reward_profit": profit, "eval_score": score}
        append_table_row(run_dir / "metrics.csv", table_row(base, r))
    if tail:
        with (run_dir / "metrics.csv").open("a") as handle:
            handle.write(tail)


def test_metrics_csv_holds_the_monitor_columns_under_its_own_names(tmp_path):
    from rl_platform.monitoring import read_table

    results = series([1.0, 2.0, 3.0])
    results[0]["env_runners"]["rewards"] = {"profit": 0.5, "risk": -0.1}
    results[2]["evaluation"] = {"iteration": 3, "score": 7.0, "episodes": 4}
    write_table(tmp_path, results, tail="4,0,ea")  # a live run's torn last line
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["iteration", "env_steps", "level", "reward_profit", "eval_score"]
    assert "reward/profit" not in header and "reward_risk" in header  # one name per figure
    assert "evaluation/score" not in header and "evaluation/episodes" in header
    assert {"entropy/shared", "policy_loss/shared", "episode_return_min"} <= set(header)

    frame = read_table(tmp_path)
    assert list(frame.index) == [1, 2, 3]
    assert frame["reward/profit"].tolist()[0] == 0.5  # renamed back for the dashboard
    assert frame["evaluation/score"].tolist()[2] == 7.0
    assert frame["entropy/shared"].tolist() == [1.0, 1.0, 1.0]


def test_the_dashboard_reads_everything_from_metrics_csv(tmp_path):
    write_table(tmp_path, series([1.0, 2.0, 3.0, 2.5]))
    AnomalyLog(tmp_path).create()  # a watched run without anomalies: nothing is replayed
    plots = render_dashboard(tmp_path)
    assert not (tmp_path / "trial").exists() and not (tmp_path / "monitor.csv").exists()
    assert {"returns", "losses", "exploration", "throughput", "index"} <= set(plots)
    page = plots["index"].read_text()
    assert "figures from metrics.csv" in page and "No anomalies" in page


def test_an_older_run_with_monitor_csv_is_still_read(tmp_path):
    import csv

    from rl_platform.monitoring import read_table

    (tmp_path / "metrics.csv").write_text(
        "iteration,env_steps,episode_return_mean,reward_profit\n1,10,1.0,0.5\n2,20,2.0,0.6\n"
        "3,30,3.0,0.7\n"  # a resumed old run: the rows after the resume are in metrics.csv
    )
    with (tmp_path / "monitor.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["iteration", "entropy/shared", "reward/profit"], [1.0, 0.9, 0.5]])
        writer.writerow([2.0, 0.8, 0.6])
    frame = read_table(tmp_path)
    assert list(frame.index) == [1, 2, 3]
    assert frame["entropy/shared"].tolist()[:2] == [0.9, 0.8]
    assert frame["reward/profit"].tolist() == [0.5, 0.6, 0.7]
    page = render_dashboard(tmp_path)["index"].read_text()
    assert "figures from monitor.csv and metrics.csv" in page


def test_read_results_keeps_each_result_as_tune_wrote_it(tmp_path):
    # Why result.json is parsed line by line, not with pandas.read_json(lines=True): that
    # turns a NaN inside a nested dict into None (the NaN rule would miss a NaN loss),
    # gives a key one iteration lacks a NaN, and fails on a live run's torn last line.
    first = make_result(1, 1.0)
    first["learners"]["shared"]["policy_loss"] = math.nan
    second = make_result(2, 2.0)
    second["curriculum"] = {"level": 1}
    write_run(tmp_path, [first, second])  # with a torn last line
    results = read_results(tmp_path)
    assert [r["training_iteration"] for r in results] == [1, 2]
    assert math.isnan(results[0]["learners"]["shared"]["policy_loss"])
    assert "curriculum" not in results[0]
    found = [a for r in results for a in AnomalyDetector().observe(r) if a.kind == "nan"]
    assert [a.key for a in found] == ["learners/shared/policy_loss"]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("{discrete: true}", ["short", "half short", "flat", "half long", "long"]),
        ("{}", ["target position", "stop-loss", "take-profit"]),
    ],
)
def test_action_names_follow_the_runs_env_config(tmp_path, config, expected):
    from rl_platform.monitoring.dashboard import env_action_names

    (tmp_path / "config.yaml").write_text(f"env:\n  id: trading\n  config: {config}\n")
    assert env_action_names(tmp_path) == expected


def test_a_sweep_trial_folder_is_read_from_its_own_result_json(tmp_path):
    write_run(tmp_path / "sweep", series([1.0, 2.0, 3.0]))  # sweep/trial/result.json
    trial = tmp_path / "sweep" / "trial"  # as a sweep's trial_<id>/ holds it
    assert [r["training_iteration"] for r in read_results(trial)] == [1, 2, 3]
    plots = render_dashboard(trial)
    assert {"returns", "losses", "index"} <= set(plots)
    assert "iterations: 3" in plots["index"].read_text()
