"""Turn-based PettingZoo envs train by self-play on the stock sampler, with no illegal move."""

import pytest

import rl_platform
from rl_platform.builder import build_algorithm_config
from rl_platform.config import load_experiment
from rl_platform.evaluation.suite import SuiteSettings

TICTACTOE = "pettingzoo:pettingzoo.classic.tictactoe_v3:env"


def experiment(algo: str, iterations: int = 2) -> dict:
    return {
        "name": f"tictactoe_{algo}",
        "seed": 0,
        "env": {"id": TICTACTOE},
        "algorithm": {
            "id": algo,
            "shared_policy": True,
            "hyperparams": {
                "train_batch_size_per_learner": 400,
                "minibatch_size": 100,
                "num_epochs": 2,
            },
            "network": {"hidden_sizes": [32]},
        },
        "resources": {"num_env_runners": 0},
        "stop": {"training_iteration": iterations},
        "checkpoint": {"every": 1, "keep": 1},
    }


def count_illegal_moves(*, episode, metrics_logger, **_):
    from rl_platform.envs.turn_based import illegal_moves_of_step

    metrics_logger.log_value("illegal_moves", illegal_moves_of_step(episode), reduce="lifetime_sum")


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "mappo"])
def test_self_play_with_one_masked_policy_samples_no_illegal_move(ray_address, algo):
    config = build_algorithm_config(load_experiment(experiment(algo)))
    assert set(config.policies) == {"shared"}  # one module plays both seats
    algo_ = config.callbacks(on_episode_step=count_illegal_moves).build_algo()
    try:
        for _ in range(2):
            result = algo_.train()
    finally:
        algo_.stop()
    runners = result["env_runners"]
    assert result["num_env_steps_sampled_lifetime"] >= 800
    assert runners["num_episodes_lifetime"] > 50  # games of 5-9 moves
    assert runners["illegal_moves"] == 0


@pytest.mark.slow
def test_rlp_evaluate_on_a_turn_based_run_plays_random_opponents(tmp_path, ray_address):
    run = rl_platform.train(experiment("ppo", iterations=1), output=tmp_path)
    assert run.status == "finished"
    outcome = rl_platform.evaluate(run.run_dir, SuiteSettings(episodes=10), workers=0)
    games = outcome.result["details"]["versus_random"]
    assert games["policy"]["games"] == games["random"]["games"] == 20
    assert games["policy"]["illegal_moves"] == 0  # the module masks; the evaluation does not
    assert outcome.result["scores"]["policy"]["vs_random"] is not None
    assert outcome.files["json"].is_file() and outcome.files["md"].is_file()
