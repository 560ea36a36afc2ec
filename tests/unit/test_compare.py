"""``rlp compare`` on fabricated multi-seed groups, run directories and sweeps (no Ray)."""

import csv
import json
from pathlib import Path

import pytest

from rl_platform.evaluation import statistics
from rl_platform.evaluation.compare import CompareError, compare, entries_of, load_sources
from rl_platform.evaluation.compare_report import FILES, write_comparison
from rl_platform.runs import AGGREGATE_FILE

REPS = 200
TWO_STEP = {"random": 4.75, "baselines": {"safe": 7.0, "optimal": 8.0}}


def aggregate(tmp_path: Path, folder: str, algorithm: str, scores, env="two_step_game", **extra):
    """A multi-seed group directory as `rlp train --seeds` writes it (the brief's format)."""
    path = tmp_path / folder
    path.mkdir(parents=True)
    data = {
        "kind": "seeds",
        "name": extra.pop("name", f"two_step_{algorithm}"),
        "algorithm": algorithm,
        "env": env,
        "score": "greedy_return",
        "episodes": 10,
        "seeds": list(range(len(scores))),
        "scores": list(scores),
        "runs": {str(i): f"seed_{i}" for i in range(len(scores))},
        **TWO_STEP,
        "iqm": {"point": 0, "low": 0, "high": 0},
        "mean": {"point": 0, "low": 0, "high": 0},
        "curve": {"env_steps": [], "iqm": [], "low": [], "high": []},
        "commit": "abc1234",
        "machine": "test",
        **extra,
    }
    (path / AGGREGATE_FILE).write_text(json.dumps(data))
    return path


def run_dir(tmp_path: Path, folder: str, algorithm: str, seed: int, score, status="finished"):
    """A finished run directory whose last metrics.csv row has the final greedy evaluation."""
    path = tmp_path / folder
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(
        f"name: two_step_{algorithm}\nseed: {seed}\nenv: {{id: two_step_game}}\n"
        f"algorithm: {{id: {algorithm}}}\nevaluation: {{every: 5, episodes: 10}}\n"
    )
    (path / "summary.json").write_text(json.dumps({"status": status}))
    with (path / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "env_steps", "eval_score"])
        writer.writerow([1, 100, "nan" if score is None else 1.0])
        writer.writerow([2, 200, "nan" if score is None else score])
    return path


def sweep_dir(
    tmp_path: Path, folder: str, algorithm: str, trials, metric="evaluation/score", space=None
):
    """A summarized sweep: sweep.yaml, summary.json and trials.csv."""
    path = tmp_path / folder
    path.mkdir(parents=True)
    space = space or {"algorithm.hyperparams.lr": {"loguniform": [1e-4, 1e-2]}}
    (path / "sweep.yaml").write_text(
        json.dumps(
            {
                "name": f"two_step_{algorithm}_sweep",
                "env": {"id": "two_step_game"},
                "algorithm": {"id": algorithm},
                "tune": {"metric": metric, "mode": "max", "search_space": space},
            }
        )
    )
    (path / "summary.json").write_text(json.dumps({"metric": metric, "mode": "max"}))
    with (path / "trials.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "optuna_trial", "status", "iterations", "env_steps", "value"])
        for i, (status, value) in enumerate(trials):
            writer.writerow([f"t{i}", i, status, 10, 1000, value])
    return path


@pytest.fixture
def qmix_vdn(tmp_path):
    qmix = aggregate(tmp_path, "qmix", "qmix", [8.0] * 9 + [7.0])
    vdn = aggregate(tmp_path, "vdn", "vdn", [7.0] * 10)
    return qmix, vdn


def test_two_groups_give_iqm_cis_and_the_probability_of_improvement(qmix_vdn):
    result = compare(qmix_vdn, reps=REPS)
    qmix, vdn = (result["entries"][n]["envs"]["two_step_game"] for n in ("qmix", "vdn"))
    assert qmix["iqm"]["point"] == 8.0  # the one 7 is outside the interquartile range
    assert qmix["mean"]["point"] == pytest.approx(7.9)
    assert qmix["mean"]["low"] < 7.9 < qmix["mean"]["high"] <= 8.0
    assert vdn["iqm"] == {"point": 7.0, "low": 7.0, "high": 7.0}
    # normalized: 0 random play (4.75), 1 the best baseline (optimal, 8)
    assert qmix["normalized_iqm"]["point"] == pytest.approx(1.0)
    assert vdn["normalized_iqm"]["point"] == pytest.approx((7 - 4.75) / (8 - 4.75))
    assert result["envs"]["two_step_game"]["best_baseline"] == "optimal"
    [pair] = result["probability_of_improvement"]
    assert (pair["x"], pair["y"]) == ("qmix", "vdn")
    assert pair["point"] == pytest.approx(0.95)  # 9 of 10 QMIX seeds beat every VDN seed, 1 ties
    assert pair["low"] <= 0.95 <= pair["high"] <= 1.0
    # the same figures as the statistics module gives (one copy of the statistics)
    expected = statistics.probability_of_improvement([8.0] * 9 + [7.0], [7.0] * 10, reps=REPS)
    assert pair["point"] == pytest.approx(expected.point)
    profile = result["performance_profile"]
    fractions = profile["entries"]["qmix"]["fraction"]
    assert fractions[0] == 1.0 and fractions[-1] == 0.0
    assert all(a >= b for a, b in zip(fractions, fractions[1:], strict=False))


def test_the_outputs_are_written_whole_and_the_json_round_trips(qmix_vdn, tmp_path):
    result = compare(qmix_vdn, reps=REPS)
    files = write_comparison(result, tmp_path / "out" / "compare")
    assert {p.name for p in files.values()} == set(FILES.values())
    assert json.loads(files["json"].read_text()) == result
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = files["md"].read_text()
    assert "| qmix | two_step_game | 10 | 8.000 [7.833, 8.000] | 7.900 [" in md
    assert "| vdn | two_step_game | 10 | 7.000 [7.000, 7.000] |" in md
    assert "| P(qmix > vdn) | 0.95 [" in md
    assert not list(files["json"].parent.glob(".*partial"))


def test_baseline_compares_each_entry_with_it_only(tmp_path):
    paths = [
        aggregate(tmp_path, "qmix", "qmix", [8.0] * 5),
        aggregate(tmp_path, "vdn", "vdn", [7.0] * 5),
        aggregate(tmp_path, "iql", "iql", [6.0, 7.0, 7.0, 6.0, 7.0]),
    ]
    result = compare(paths, baseline="vdn", reps=REPS)
    pairs = [(p["x"], p["y"]) for p in result["probability_of_improvement"]]
    assert pairs == [("qmix", "vdn"), ("iql", "vdn")]
    all_pairs = compare(paths, reps=REPS)["probability_of_improvement"]
    assert [(p["x"], p["y"]) for p in all_pairs] == [
        ("qmix", "vdn"),
        ("qmix", "iql"),
        ("vdn", "iql"),
    ]
    with pytest.raises(CompareError, match="--baseline 'ppo' is not an entry"):
        compare(paths, baseline="ppo", reps=REPS)


def test_entries_span_envs_and_are_normalized_per_env(tmp_path):
    other = {"random": 0.0, "baselines": {"greedy": 100.0}}
    paths = [
        aggregate(tmp_path, "a", "qmix", [8.0] * 4),
        aggregate(tmp_path, "b", "vdn", [7.0] * 4),
        aggregate(
            tmp_path, "c", "qmix", [50.0, 60.0, 70.0], env="coverage", name="cov_qmix", **other
        ),
        aggregate(tmp_path, "d", "vdn", [100.0] * 4, env="coverage", name="cov_vdn", **other),
    ]
    result = compare(paths, reps=REPS)
    assert list(result["entries"]) == ["qmix", "vdn"]
    qmix = result["entries"]["qmix"]
    assert qmix["envs"]["coverage"]["normalized"] == pytest.approx([0.5, 0.6, 0.7])
    assert qmix["all"]["runs_per_env"] == 3  # the stratified bootstrap needs equal runs per env
    assert any("first 3 runs" in n for n in result["notes"])
    assert qmix["all"]["mean"]["point"] == pytest.approx((1.0 * 3 + 0.5 + 0.6 + 0.7) / 6)
    # QMIX wins on two_step, VDN on coverage: even odds
    assert result["probability_of_improvement"][0]["point"] == pytest.approx(0.5)


def test_two_experiments_of_one_algorithm_on_one_env_are_named_apart(tmp_path):
    paths = [
        aggregate(tmp_path, "a", "qmix", [8.0] * 3, name="two_step_qmix"),
        aggregate(tmp_path, "b", "qmix", [7.0] * 3, name="two_step_qmix_small"),
    ]
    assert list(entries_of(load_sources(paths))) == [
        "qmix (two_step_qmix)",
        "qmix (two_step_qmix_small)",
    ]
    again = [aggregate(tmp_path, f"{d}/stamp", "qmix", [8.0] * 3) for d in ("x", "y")]
    assert list(entries_of(load_sources(again))) == [
        "qmix (two_step_qmix, stamp)",
        f"qmix (two_step_qmix, {again[1]})",
    ]


def test_run_directories_of_one_experiment_form_one_entry(tmp_path):
    paths = [run_dir(tmp_path, f"q{s}", "qmix", s, 8.0) for s in range(3)]
    paths += [run_dir(tmp_path, f"v{s}", "vdn", s, 7.0) for s in range(3)]
    result = compare(paths, reps=REPS)
    qmix = result["entries"]["qmix"]
    assert qmix["envs"]["two_step_game"]["scores"] == [8.0, 8.0, 8.0]
    assert qmix["sources"][0]["runs"] == ["0", "1", "2"]
    # runs carry no random play or baseline: one env, so raw scores, and it says so
    assert result["scale"] == "raw"
    assert any("raw scores" in n for n in result["notes"])


def test_a_run_with_no_final_evaluation_or_unfinished_is_refused(tmp_path):
    vdn = aggregate(tmp_path, "vdn", "vdn", [7.0] * 3)
    bare = run_dir(tmp_path, "bare", "qmix", 0, None)
    with pytest.raises(CompareError, match="--seeds 0-4"):
        compare([bare, vdn], reps=REPS)
    cut = run_dir(tmp_path, "cut", "qmix", 0, 8.0, status="interrupted")
    with pytest.raises(CompareError, match="has not finished"):
        compare([cut, vdn], reps=REPS)
    twice = [run_dir(tmp_path, f"s{i}", "qmix", 0, 8.0) for i in range(2)]
    with pytest.raises(CompareError, match="seed 0 of two_step_qmix is already given"):
        compare([*twice, vdn], reps=REPS)


def test_a_sweep_gives_its_finished_trials_objectives(tmp_path):
    trials = [("complete", 8.0), ("stopped early", 4.0), ("complete", 7.5), ("error", "")]
    sweep = sweep_dir(tmp_path, "sweep", "qmix", trials)
    vdn = aggregate(tmp_path, "vdn", "vdn", [7.0] * 3)
    result = compare([sweep, vdn], reps=REPS)
    source = result["entries"]["qmix"]["sources"][0]
    assert source["kind"] == "sweep" and source["scores"] == [8.0, 7.5]
    assert source["runs"] == ["t0", "t2"]


def test_unlike_scores_and_sweeps_over_algorithms_are_refused(tmp_path):
    vdn = aggregate(tmp_path, "vdn", "vdn", [7.0] * 3)
    training = sweep_dir(
        tmp_path, "s1", "qmix", [("complete", 5.0)], metric="env_runners/episode_return_mean"
    )
    with pytest.raises(CompareError, match="score different things"):
        compare([training, vdn], reps=REPS)
    mixed = sweep_dir(
        tmp_path,
        "s2",
        "qmix",
        [("complete", 5.0)],
        space={"algorithm.id": {"choice": ["qmix", "vdn"]}},
    )
    with pytest.raises(CompareError, match="searches algorithm.id"):
        compare([mixed, vdn], reps=REPS)


def test_bad_inputs_are_refused(tmp_path, qmix_vdn):
    qmix, _ = qmix_vdn
    with pytest.raises(CompareError, match="no such directory"):
        compare([qmix, tmp_path / "missing"], reps=REPS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match="holds no aggregate.json"):
        compare([qmix, tmp_path / "empty"], reps=REPS)
    with pytest.raises(CompareError, match="one entry only"):
        compare([qmix], reps=REPS)
    with pytest.raises(CompareError, match="given twice"):
        compare([qmix, qmix.parent / "." / qmix.name], reps=REPS)
    broken = aggregate(tmp_path, "broken", "iql", [7.0, float("nan")])
    with pytest.raises(CompareError, match="not a finite number"):
        compare([qmix, broken], reps=REPS)
    other = aggregate(tmp_path, "cov", "iql", [1.0], env="coverage")
    with pytest.raises(CompareError, match="no env is shared"):
        compare([qmix, other], reps=REPS)


def test_an_env_without_baselines_falls_back_to_raw_scores_on_one_env(tmp_path):
    none = {"random": -50.0, "baselines": {}}
    paths = [
        aggregate(tmp_path, "a", "mappo", [-10.0, -12.0], env="vmas:balance", **none),
        aggregate(tmp_path, "b", "ippo", [-20.0, -22.0], env="vmas:balance", **none),
    ]
    result = compare(paths, reps=REPS)
    assert result["scale"] == "raw"
    assert result["envs"]["vmas:balance"]["rule"] == "raw"
    assert result["entries"]["mappo"]["all"]["iqm"]["point"] == pytest.approx(-11.0)


def test_cli_prints_the_table_and_writes_the_files(cli, qmix_vdn, tmp_path):
    out = tmp_path / "a-rather-long-output-directory-name" / "compare"
    result = cli("compare", *qmix_vdn, "--output", out, "--reps", REPS)
    assert result.exit_code == 0, result.output
    assert "7.000 [7.000, 7.000]" in result.stdout
    assert "P(qmix > vdn) = 0.95" in result.stdout
    assert str(out / "compare.json") in result.stdout.splitlines()  # never wrapped
    assert (out / "compare.png").is_file() and (out / "compare.md").is_file()


def test_cli_refuses_bad_input_with_exit_2_and_writes_nothing(cli, qmix_vdn, tmp_path):
    qmix, _ = qmix_vdn
    out = tmp_path / "out"
    result = cli("compare", qmix, tmp_path / "missing", "--output", out)
    assert result.exit_code == 2
    assert "no such directory" in result.stderr
    assert not out.exists()
    result = cli("compare", qmix, "--output", out)
    assert result.exit_code == 2 and "one entry only" in result.stderr
    assert not out.exists()


def test_cli_help_has_an_example_and_errors_are_one_paragraph(cli, tmp_path):
    assert "Example" in cli("compare", "--help").output
    result = cli("compare", tmp_path / "a", tmp_path / "b")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_scores_over_different_episode_counts_are_noted(tmp_path):
    paths = [
        aggregate(tmp_path, "a", "qmix", [8.0] * 3),
        aggregate(tmp_path, "b", "vdn", [7.0] * 3, episodes=100),
    ]
    notes = compare(paths, reps=REPS)["notes"]
    assert any("different numbers of greedy episodes (10, 100)" in n for n in notes)


def test_the_two_step_must_show_on_fabricated_groups(tmp_path):
    """The shape of the issue's check: 10 QMIX seeds at the optimum 8, 10 VDN seeds at 7."""
    qmix = aggregate(tmp_path, "qmix", "qmix", [8.0] * 10)
    vdn = aggregate(tmp_path, "vdn", "vdn", [7.0] * 10)
    result = compare([qmix, vdn], reps=REPS)
    figures = {n: result["entries"][n]["envs"]["two_step_game"]["iqm"] for n in ("qmix", "vdn")}
    assert figures == {
        "qmix": {"point": 8.0, "low": 8.0, "high": 8.0},
        "vdn": {"point": 7.0, "low": 7.0, "high": 7.0},
    }
    [pair] = result["probability_of_improvement"]
    assert (pair["point"], pair["low"], pair["high"]) == (1.0, 1.0, 1.0)


def test_a_group_whose_seeds_have_not_finished_is_refused(tmp_path, qmix_vdn):
    group = tmp_path / "group"
    group.mkdir()
    (group / "seeds.json").write_text('{"seeds": [0, 1], "episodes": 100}')
    with pytest.raises(CompareError, match="rlp train --resume"):
        compare([qmix_vdn[0], group], reps=REPS)
