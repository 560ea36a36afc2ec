"""The evaluation suite without Ray: known answers, determinism, bad checkpoints."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
from policy_exports import fresh_ppo_export, run_directory
from typer.testing import CliRunner

from rl_platform import registry
from rl_platform.cli import app
from rl_platform.config import ConfigError, load_experiment
from rl_platform.envs.base import BatchedCore, CoreEnvConfig, CoreMultiAgentEnv
from rl_platform.evaluation import scoring
from rl_platform.evaluation.baselines import RANDOM
from rl_platform.evaluation.rollout import Perturbation, make_core, play, seeded_job
from rl_platform.evaluation.scoring import normalized, overall
from rl_platform.evaluation.suite import SuiteSettings, evaluate, evaluate_target
from rl_platform.evaluation.target import EvaluationError, Target, resolve_target

EXPERIMENT = {
    "name": "eval_unit",
    "env": {"id": "rendezvous", "config": {"num_agents": 3, "episode_length": 20}},
    "algorithm": {"id": "ppo", "shared_policy": True},
    "checkpoint": {"every": 1, "keep": 2},
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A run directory that kept two checkpoints (iterations 1 and 3) of untrained modules.

    Returns (the run, its newest checkpoint).
    """
    resolved = load_experiment(EXPERIMENT)
    run = tmp_path_factory.mktemp("run")
    (run / "config.yaml").write_text(resolved.to_yaml())
    (run / "metrics.csv").write_text(
        "iteration,env_steps,episode_return_mean,level,reward_env\n"
        "1,1000,-30,,-10\n2,2000,-15,,-5\n3,3000,-9,,-3\n"
    )
    fresh_ppo_export(run / "trial" / "checkpoint_000000", EXPERIMENT)
    root, _ = fresh_ppo_export(run / "trial" / "checkpoint_000002", EXPERIMENT)
    return run, root


def small(**kw) -> SuiteSettings:
    return SuiteSettings(**{"episodes": 4, "seed": 3, **kw})


def test_overall_has_the_same_weights_for_every_row_and_no_sample_efficiency():
    weights = scoring.overall_weights()
    assert "sample_efficiency" not in weights  # baselines do not learn: reported apart
    assert sum(weights.values()) == pytest.approx(1.0)
    assert overall(dict.fromkeys(weights, 1.0), weights) == pytest.approx(1.0)
    # a row lacking a dimension the env supports gets no overall: never renormalized per row
    assert overall({**dict.fromkeys(weights, 1.0), "robustness": None}, weights) is None
    # what the env cannot support leaves the weights of every row alike
    one_level = scoring.overall_weights({"generalization": "one level", "adaptability": "x"})
    assert one_level == pytest.approx({"robustness": 0.5, "coordination": 0.5})
    dims = {"robustness": 1.0, "coordination": 0.0, "generalization": None}
    assert overall(dims, one_level) == pytest.approx(0.5)


def test_normalized_score_is_zero_at_random_one_at_the_best_baseline():
    assert normalized(-3.0, -3.0, 5.0) == 0.0
    assert normalized(5.0, -3.0, 5.0) == 1.0
    assert normalized(1.0, 2.0, 2.0) is None  # no baseline beats random


def test_a_policy_that_ignores_observations_loses_nothing_to_observation_noise():
    core = make_core("resource_allocation", {}, "easy", 6)

    def constant(obs):  # never looks at obs
        return core.default_actions(obs)

    clean = play(core, constant, seeded_job("c", "clean", "easy", 6, 0))
    noisy_job = seeded_job("c", "obs_noise", "easy", 6, 0, Perturbation(obs_noise=5.0))
    noisy = play(core, constant, noisy_job, obs_scale=np.ones(core.observation_space.shape))
    np.testing.assert_array_equal(clean.returns, noisy.returns)
    perturbed = {("c", t): noisy for t in scoring.ROBUSTNESS_TESTS}
    retained = scoring.robustness(clean, perturbed, "c", (-1.0, 1.0))
    assert retained["obs_noise"] == {"score": clean.returns.mean(), "loss": 0.0, "retained": 1.0}


def test_a_policy_that_reads_observations_loses_under_heavy_noise():
    core = make_core("resource_allocation", {}, "easy", 16)
    scale = np.ones(core.observation_space.shape, np.float32)
    clean = play(
        core,
        lambda o: core.baseline_actions(core.baselines[0], o),
        seeded_job("b", "clean", "easy", 16, 0),
    )
    noisy = play(
        core,
        lambda o: core.baseline_actions(core.baselines[0], o),
        seeded_job("b", "n", "easy", 16, 0, Perturbation(obs_noise=3.0)),
        scale,
    )
    assert noisy.returns.mean() < clean.returns.mean()


def test_faulty_and_random_agents_replace_one_agent_per_copy():
    core = make_core("coverage", {}, "easy", 6)
    for replaced in ("faulty", RANDOM):
        job = seeded_job("b", replaced, "easy", 6, 0, Perturbation(replaced=replaced))
        played = play(core, lambda o: core.baseline_actions("greedy", o), job)
        best = play(
            core,
            lambda o: core.baseline_actions("greedy", o),
            seeded_job("b", "clean", "easy", 6, 0),
        )
        assert played.returns.mean() < best.returns.mean()


def test_a_task_switch_takes_effect_mid_episode():
    core = make_core("supply_chain", {}, "easy", 8)
    act = lambda o: core.baseline_actions(core.baselines[0], o)  # noqa: E731
    steady = play(core, act, seeded_job("b", "clean", "easy", 8, 0))
    switched = play(
        core, act, seeded_job("b", "s", "easy", 8, 0, Perturbation(switch=(5, "expert")))
    )
    half = len(steady.step_rewards) // 2
    np.testing.assert_allclose(steady.step_rewards[:5], switched.step_rewards[:5])
    assert not np.allclose(steady.step_rewards[half:], switched.step_rewards[half:])


def test_sample_efficiency_is_the_area_under_the_greedy_curve_of_kept_checkpoints():
    # random scores -10, the best baseline -2: greedy means normalize to 0, .625, .875
    points = [
        {"checkpoint": f"c{i}", "iteration": i, "env_steps": 1000 * i, "returns": [m - 1, m + 1]}
        for i, m in ((1, -10.0), (2, -5.0), (3, -3.0))
    ]
    result = scoring.sample_efficiency(points, -10.0, -2.0, has_baselines=True)
    assert result["measure"] == "auc"
    expected = ((0 + 0.625) / 2 + (0.625 + 0.875) / 2) / 2
    assert result["auc"] == pytest.approx(expected)
    assert result["steps_to_baseline"] is None
    assert result["steps_to_90pct_final"] == 3000  # 0.625 < 0.9 * 0.875 (the last)
    assert result["curve"]["score"] == [-10.0, -5.0, -3.0]
    low, high = result["curve"]["low"][0], result["curve"]["high"][0]
    assert (low, high) == pytest.approx((-10 - 12.706 * 1, -10 + 12.706 * 1), abs=1e-3)  # t, 1 df
    without = scoring.sample_efficiency(points, -10.0, -2.0, has_baselines=False)
    assert "no baseline" in without["unavailable"] and without["curve"]["score"][2] == -3.0


def test_kept_checkpoints_get_their_iteration_and_env_steps(checkpoint, tmp_path):
    run, _ = checkpoint
    target = resolve_target(run)
    assert target.kept_note is None
    assert [(c.name, c.iteration, c.env_steps) for c in target.kept] == [
        ("checkpoint_000000", 1, 1000),
        ("checkpoint_000002", 3, 3000),
    ]
    lone = tmp_path / "lone"
    shutil.copytree(run, lone)
    shutil.rmtree(lone / "trial" / "checkpoint_000000")
    target = resolve_target(lone)
    assert target.kept_note.startswith("the run kept 1 checkpoint (checkpoint_000002)")
    # every 2 iterations over 3: checkpoint 0 at iteration 2, checkpoint 1 at the stop (3)
    odd = tmp_path / "odd"
    shutil.copytree(run, odd)
    (odd / "trial" / "checkpoint_000002").rename(odd / "trial" / "checkpoint_000001")
    config = (odd / "config.yaml").read_text().replace("every: 1", "every: 2")
    (odd / "config.yaml").write_text(config)
    kept = resolve_target(odd).kept
    assert [(c.name, c.iteration, c.env_steps) for c in kept] == [
        ("checkpoint_000000", 2, 2000),
        ("checkpoint_000001", 3, 3000),
    ]


def test_the_curve_keeps_rows_with_steps_and_a_score_and_skips_a_torn_line(tmp_path):
    from rl_platform.evaluation.target import _read_curve

    path = tmp_path / "metrics.csv"
    path.write_text(
        "iteration,env_steps,episode_return_mean,level,reward_env\n"
        "1,1000,-30,easy,\n"  # no task score: the return counts
        "2,2000,nan,easy,-5\n"  # the task score counts, the return does not
        "3,3000,-9,hard,nan\n"  # a task score that is NaN: left out
        "4,,-8,hard,-2\n"  # no env steps: left out
        "5,5000,-7,hard,-1"  # torn (a live run writing): left out
    )
    rows = _read_curve(path)
    assert [(r["iteration"], r["level"], r["reward_env"]) for r in rows] == [
        ("1", "easy", ""),
        ("2", "easy", "-5"),
    ]
    assert _read_curve(tmp_path / "missing.csv") == []
    (tmp_path / "empty.csv").write_text("")
    assert _read_curve(tmp_path / "empty.csv") == []


def test_recovery_steps_count_until_the_reference_is_matched():
    ref = np.ones(30)
    switched = np.concatenate([np.zeros(7), np.ones(23)])
    assert scoring.recovery_steps(switched, ref, gap_per_step=1.0) == 7
    assert scoring.recovery_steps(np.zeros(30), ref, gap_per_step=1.0) is None


def test_generalization_of_the_best_baseline_is_one():
    target = Target(
        checkpoint=None,
        run_dir=None,
        env_id="x",
        env_config={},
        algorithm="ppo",
        level="easy",
        trained_levels=("easy",),
        levels=("easy", "hard"),
        baselines=("b",),
        curve=[],
    )
    levels = {
        "easy": {"b": {"normalized": 1.0}, RANDOM: {"normalized": 0.0}, "p": {"normalized": 0.8}},
        "hard": {"b": {"normalized": 1.0}, RANDOM: {"normalized": 0.0}, "p": {"normalized": 0.2}},
    }
    assert scoring.generalization(levels, "b", target)["score"] == 1.0
    assert scoring.generalization(levels, RANDOM, target)["score"] == 0.0
    assert scoring.generalization(levels, "p", target)["score"] == pytest.approx(0.25)


def test_evaluation_is_deterministic_for_a_seed_and_writes_the_report(checkpoint, tmp_path):
    run, _ = checkpoint
    first = evaluate(run, small(), report=tmp_path / "a", workers=0)
    again = evaluate(run, small(), report=tmp_path / "b", workers=0)
    other = evaluate(run, small(seed=4), report=tmp_path / "c", workers=0)
    for result in (first, again, other):
        result.result.pop("timing")
    assert first.result == again.result
    assert first.result["scores"] != other.result["scores"]
    data = json.loads((tmp_path / "a" / "evaluation.json").read_text())
    assert set(data["dimensions"]) == {"policy", *data["policies"]}
    efficiency = data["details"]["sample_efficiency"]
    assert efficiency["auc"] is not None and data["sample_efficiency"]["measure"] == "auc"
    assert efficiency["curve"]["checkpoint"] == ["checkpoint_000000", "checkpoint_000002"]
    # the newest kept checkpoint is the evaluated one: its point is the policy's clean score
    assert efficiency["curve"]["score"][-1] == pytest.approx(data["scores"]["policy"]["mean"])
    # like for like: every row but random's has every dimension of the weights and overall
    assert "sample_efficiency" not in data["weights"]
    for name in data["policies"]:
        dims = data["dimensions"][name]
        assert set(dims) == {*scoring.WEIGHTS, "overall"}
        if name != RANDOM:
            assert dims["overall"] == pytest.approx(scoring.overall(dims, data["weights"]))
            assert dims["overall"] is not None, (name, dims)
    assert data["dimensions"][RANDOM]["overall"] is None  # the reference
    # the report's action panels name the env's actions (continuous rendezvous: velocities)
    assert data["env"]["action_names"] == ["velocity x", "velocity y"]
    for name in ("report.md", "report.html", "plots/dimensions.png", "plots/trace.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    for policy, dims in data["dimensions"].items():
        for name, value in dims.items():
            assert value is None or 0.0 <= value <= 1.0, (policy, name, value)


def test_a_bare_checkpoint_has_no_sample_efficiency(checkpoint, tmp_path):
    _, ckpt = checkpoint
    bare = tmp_path / "bare"
    shutil.copytree(ckpt, bare)
    outcome = evaluate(bare, small(baselines=False), workers=0)
    assert outcome.report_dir == tmp_path / "evaluation_bare"
    assert "a bare checkpoint" in outcome.result["details"]["sample_efficiency"]["unavailable"]
    assert "a bare checkpoint" in outcome.result["sample_efficiency"]["unavailable"]
    assert outcome.result["policies"] == ["policy", RANDOM]


def test_missing_and_corrupt_checkpoints_are_refused(checkpoint, tmp_path):
    with pytest.raises(EvaluationError, match="no such checkpoint"):
        resolve_target(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvaluationError, match="no policy export"):
        resolve_target(empty)
    _, ckpt = checkpoint
    corrupt = tmp_path / "corrupt"
    shutil.copytree(ckpt, corrupt)
    (corrupt / "policies" / "manifest.json").write_text("{not json")
    with pytest.raises(EvaluationError, match="corrupt manifest"):
        resolve_target(corrupt)
    (corrupt / "policies" / "manifest.json").write_text(
        (ckpt / "policies/manifest.json").read_text()
    )
    (corrupt / "policies" / "shared.pt").write_bytes(b"garbage")
    with pytest.raises(EvaluationError, match="cannot load module"):
        evaluate(corrupt, small(), workers=0)


def test_cli_exits_2_with_a_clear_message_for_a_bad_checkpoint(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(tmp_path / "missing"), "--workers", "0"])
    assert result.exit_code == 2
    assert "no such checkpoint" in result.output
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--episodes", "0"])
    assert result.exit_code == 2 and "--episodes" in result.output


def test_cli_evaluates_a_run_in_process(checkpoint, tmp_path):
    run, _ = checkpoint
    result = CliRunner().invoke(
        app,
        ["evaluate", str(run), "--episodes", "3", "--workers", "0", "--report", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert "overall" in result.output
    assert (tmp_path / "report.html").is_file()


def test_the_shield_in_evaluation_reports_violations_and_interventions(checkpoint, tmp_path):
    import yaml

    run, _ = checkpoint
    with pytest.raises(EvaluationError, match="safety"):
        evaluate(run, small(shield=True), report=tmp_path / "none", workers=0)
    shielded = tmp_path / "run"
    shutil.copytree(run, shielded)
    config = yaml.safe_load((shielded / "config.yaml").read_text())
    config["safety"] = {"constraints": [{"name": "max_speed", "limit": 0.5}], "fallback": "still"}
    (shielded / "config.yaml").write_text(yaml.safe_dump(config))
    plain = evaluate(shielded, small(), report=tmp_path / "a", workers=0).result
    guarded = evaluate(shielded, small(shield=True), report=tmp_path / "b", workers=0).result
    random_rates = plain["details"]["safety"][RANDOM]
    assert random_rates["violation_rate"]["max_speed"] > 0.3  # random moves are fast
    assert "intervention_rate" not in random_rates
    shield = guarded["details"]["safety"][RANDOM]
    assert shield["intervention_rate"] == pytest.approx(shield["violation_rate"]["any"])
    assert shield["unresolved"] == 0
    assert guarded["settings"]["shielded"] is True
    assert "violates max_speed" in (tmp_path / "b" / "report.md").read_text()


# ------------------------------------------------------------- an env from another library


class ForeignConfig(CoreEnvConfig):
    """What a VMAS or PettingZoo view's config looks like to the suite: no task levels."""

    episode_length: int = 12
    discrete: bool = False


class ForeignCore(BatchedCore):
    """A foreign-style core: one level, no baselines, one reward, a no-op default action.

    Two agents walk on a line towards a target; discrete actions are left/stay/right.
    """

    reward_components = ("reward",)
    default_reward_weights = {"reward": 1.0}
    task_levels = ("default",)
    baselines = ()
    state_fields = ("pos", "target", "steps")

    def __init__(self, config: ForeignConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        self.observation_space = gym.spaces.Box(-5, 5, (2,), np.float32)
        self.state_space = gym.spaces.Box(-5, 5, (4,), np.float32)
        if config.discrete:
            self.action_space = gym.spaces.Discrete(3)
        else:
            self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.pos = np.zeros((batch_size, 2), np.float32)
        self.target = np.zeros((batch_size, 2), np.float32)
        self.steps = np.zeros(batch_size, np.int64)

    @property
    def num_agents(self) -> int:
        return 2

    def reset(self, rng, mask=None):
        mask = np.ones(self.batch_size, bool) if mask is None else mask
        self.pos[mask] = rng.uniform(-2, 2, (int(mask.sum()), 2))
        self.target[mask] = rng.uniform(-2, 2, (int(mask.sum()), 2))
        self.steps[mask] = 0

    def observe(self):
        return np.stack([self.pos, self.target - self.pos], axis=-1).astype(np.float32)

    def global_state(self):
        return self.observe().reshape(self.batch_size, -1)

    def step(self, actions, rng):
        if self.config.discrete:
            move = np.asarray(actions, np.float32) - 1.0
        else:
            move = np.clip(np.asarray(actions, np.float32)[..., 0], -1, 1)
        self.pos += 0.5 * move
        self.steps += 1
        reward = -np.abs(self.target - self.pos).astype(np.float32)
        return self.time_limit_result({"reward": reward}, self.steps, self.config.episode_length)

    def default_action(self):
        return np.array(1) if self.config.discrete else np.zeros(1, np.float32)

    def baseline_actions(self, name, obs):
        raise ValueError(f"no baseline {name!r}")


class ForeignEnv(CoreMultiAgentEnv):
    core_cls = ForeignCore
    config_model = ForeignConfig


@pytest.fixture(scope="module", params=[False, True], ids=["box", "discrete"])
def foreign_run(request, tmp_path_factory):
    """A run directory of an untrained PPO policy on the foreign-style env."""
    registry.register_env(registry.EnvEntry("foreign_line", "test only", ForeignEnv))
    experiment = {
        "name": "foreign",
        "env": {"id": "foreign_line", "config": {"discrete": request.param}},
        "algorithm": {"id": "ppo", "shared_policy": True},
    }
    try:
        yield run_directory(tmp_path_factory.mktemp("foreign") / "run", experiment)
    finally:
        registry.ENVS.pop("foreign_line")


def test_an_env_with_one_level_and_no_baselines_is_scored_against_random(foreign_run, tmp_path):
    outcome = evaluate(foreign_run, small(episodes=6), report=tmp_path, workers=0)
    result = outcome.result
    assert result["policies"] == ["policy", RANDOM]
    missing = result["not_applicable"]
    assert set(missing) == {
        "normalized", "sample_efficiency", "generalization", "adaptability", "trace",
    }  # fmt: skip
    assert "one task level" in missing["adaptability"] and "no baseline" in missing["normalized"]
    policy, rnd = result["scores"]["policy"], result["scores"][RANDOM]
    assert policy["normalized"] is None and rnd["vs_random"] == 0.0
    assert policy["vs_random"] == pytest.approx(policy["mean"] - rnd["mean"])
    dims = result["dimensions"]["policy"]
    for name in ("generalization", "adaptability"):
        assert dims[name] is None, name
    assert result["weights"] == pytest.approx({"robustness": 0.5, "coordination": 0.5})
    assert 0.0 <= dims["coordination"] <= 1.0  # the default: how alike the agents act
    assert "action_correlation" in result["details"]["coordination"]["policy"]
    robustness = result["details"]["robustness"]["policy"]
    assert set(robustness) == set(scoring.ROBUSTNESS_TESTS)  # faulty = stuck at the no-op
    # the gap is the policy's own lead over random play: 0 where it has none
    if policy["mean"] <= rnd["mean"]:
        assert dims["robustness"] == 0.0
    assert dims["overall"] == pytest.approx(scoring.overall(dims, result["weights"]))
    assert "kept 1 checkpoint" in result["details"]["sample_efficiency"]["unavailable"]
    markdown = (tmp_path / "report.md").read_text()
    assert "n/a on this env: the env has one task level" in markdown
    assert "n/a on this env: the env declares no baseline" in markdown
    assert (tmp_path / "report.html").read_text().count("n/a on this env") >= 4
    for plot in ("dimensions", "robustness", "trace", "actions"):
        assert (tmp_path / "plots" / f"{plot}.png").stat().st_size > 0, plot


def test_a_core_without_a_do_nothing_action_skips_the_faulty_agent(foreign_run, monkeypatch):
    def missing(self):
        raise NotImplementedError

    monkeypatch.setattr(ForeignCore, "default_action", missing)
    result = evaluate_target(resolve_target(foreign_run), small(episodes=3))
    assert "do-nothing action" in result["not_applicable"]["faulty_agent"]
    faulty = result["details"]["robustness"]["policy"]["faulty_agent"]
    assert faulty == {"unavailable": result["not_applicable"]["faulty_agent"]}


def test_an_env_without_a_batched_core_is_refused_clearly(foreign_run, monkeypatch):
    class ViewOnly:  # e.g. a PettingZoo env the batched runner does not take
        task_levels = ("default",)

    monkeypatch.setitem(
        registry.ENVS, "foreign_line", registry.EnvEntry("foreign_line", "test", ViewOnly)
    )
    with pytest.raises(EvaluationError, match="has no batched core"):
        resolve_target(foreign_run)


def test_rlp_evaluate_lists_what_is_na_on_the_env(foreign_run, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(foreign_run),
            "--episodes",
            "2",
            "--workers",
            "0",
            "--report",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "vs random" in result.output
    assert "n/a on this env: adaptability: the env has one task level" in result.output


def test_a_config_the_core_cannot_run_is_refused_before_any_episode(foreign_run, monkeypatch):
    why = "agents' observation spaces differ (speaker 3, listener 11)"
    monkeypatch.setattr(
        ForeignEnv, "batched_reason", classmethod(lambda cls, c: why), raising=False
    )
    with pytest.raises(EvaluationError, match=r"cannot run this config \(agents' observation"):
        resolve_target(foreign_run)
    experiment = {
        "name": "x",
        "env": {"id": "foreign_line"},
        "algorithm": {"id": "ppo"},
        "evaluation": {"every": 2},
    }
    with pytest.raises(ConfigError, match="cannot be evaluated during training"):
        load_experiment(experiment)
    load_experiment({**experiment, "evaluation": {"every": 0}})  # training alone is fine


@pytest.fixture(scope="module")
def suite_at_defaults(checkpoint):
    """The suite on the newest checkpoint at its default episodes and seed (100, 0)."""
    _, root = checkpoint
    return evaluate_target(resolve_target(root), SuiteSettings(), workers=0)


def measure_in_training(root, episodes: int) -> dict:
    """The training-time evaluation's figures for the checkpoint's modules."""
    from rl_platform.checkpoints import load_policy
    from rl_platform.evaluation.callback import callback_class

    experiment = load_experiment({**EXPERIMENT, "evaluation": {"every": 1, "episodes": episodes}})
    bound = callback_class(experiment)

    class Algorithm:  # the callback reads the live modules; here: the checkpoint's
        def get_module(self, module_id):
            return load_policy(root, module_id)

    return bound().measure(Algorithm(), bound.spec["level"])


def test_training_time_evaluation_is_the_suite_on_the_same_episodes(checkpoint, suite_at_defaults):
    """Same episodes: the same score, interval, normalized score and robustness."""
    measured = measure_in_training(checkpoint[1], SuiteSettings().episodes)
    own = suite_at_defaults["scores"]["policy"]
    assert measured["level"] == suite_at_defaults["level"]
    assert measured["score"] == pytest.approx(own["mean"], rel=1e-6)
    assert measured["normalized"] == pytest.approx(own["normalized"], rel=1e-6)
    assert [measured["score_low"], measured["score_high"]] == pytest.approx(own["ci95"], rel=1e-6)
    retained = suite_at_defaults["details"]["robustness"]["policy"]["obs_noise"]["retained"]
    assert measured["robustness"] == pytest.approx(retained, rel=1e-6)


def test_few_training_episodes_are_normalized_by_the_suites_reference(
    checkpoint, suite_at_defaults
):
    """5 episodes: the suite's score on 5, normalized by random and baselines on 100."""
    _, root = checkpoint
    measured = measure_in_training(root, 5)
    few = evaluate_target(resolve_target(root), SuiteSettings(episodes=5), workers=0)
    assert measured["score"] == pytest.approx(few["scores"]["policy"]["mean"], rel=1e-6)
    row = suite_at_defaults["levels"][suite_at_defaults["level"]]
    low, high = scoring.gap(row, resolve_target(root).baselines)
    points = [measured["score"], measured["score_low"], measured["score_high"]]
    expected = [scoring.normalized(v, low, high) for v in points]
    got = [measured["normalized"], measured["normalized_low"], measured["normalized_high"]]
    assert got == pytest.approx(expected, rel=1e-6)


def test_the_interval_of_a_mean_is_students_t():
    returns = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    entry = scoring.summary(returns, {"normalized": None}, 0.0)
    half = 2.2622 * returns.std(ddof=1) / np.sqrt(10)  # t(0.975, 9 df), not 1.96
    assert entry["ci95"] == pytest.approx([5.5 - half, 5.5 + half], rel=1e-4)
