"""Turn-based PettingZoo AEC envs: only the acting agent observes, every reward arrives;
games against random play."""

import gymnasium as gym
import numpy as np
import pytest
from pettingzoo import AECEnv

from rl_platform.builder import choose_sampler
from rl_platform.config import load_experiment
from rl_platform.envs.checks import check_env
from rl_platform.envs.pettingzoo import PettingZooEnv
from rl_platform.envs.turn_based import TurnBasedEnv, illegal_moves_of_step
from rl_platform.evaluation.versus import play_versus_random

TICTACTOE = "pettingzoo:pettingzoo.classic.tictactoe_v3:env"
CONNECT_FOUR = "pettingzoo:pettingzoo.classic.connect_four_v3:env"


class GiftGame(AECEnv):
    """Three agents in turn; a move of k gives the next agent k; the last move gives all 10."""

    metadata = {"name": "gift_v0", "is_parallelizable": False}  # noqa: RUF012

    def __init__(self, moves: int = 6):
        self.possible_agents = ["a", "b", "c"]
        self.moves = moves

    def observation_space(self, agent):
        return gym.spaces.Dict(
            {
                "observation": gym.spaces.Box(0, 100, (2,), np.float32),
                "action_mask": gym.spaces.Box(0, 1, (3,), np.int8),
            }
        )

    def action_space(self, agent):
        return gym.spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: {} for a in self.agents}
        self.t = 0
        self.agent_selection = "a"

    def observe(self, agent):
        index = self.possible_agents.index(agent)
        return {
            "observation": np.array([self.t, index], np.float32),
            "action_mask": np.array([1, 1, self.t % 2], np.int8),  # 2 allowed on odd moves
        }

    def step(self, action):
        if self.terminations[self.agent_selection]:
            self._was_dead_step(action)
            return
        acting = self.agent_selection
        self._cumulative_rewards[acting] = 0
        following = self.agents[(self.agents.index(acting) + 1) % len(self.agents)]
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self.rewards[following] = float(action)
        self.t += 1
        if self.t >= self.moves:
            self.rewards = {a: r + 10.0 for a, r in self.rewards.items()}
            self.terminations = dict.fromkeys(self.agents, True)
        self.agent_selection = following
        self._accumulate_rewards()


def play(env, seed, rng, until=None):
    """One game of uniformly random legal moves: [(obs, rewards, terms, truncs, infos)]."""
    obs, infos = env.reset(seed=seed)
    steps = [(obs, {}, {}, {}, infos)]
    while True:
        ((agent, seen),) = obs.items()
        action = int(rng.choice(np.flatnonzero(seen["action_mask"])))
        obs, rewards, terms, truncs, infos = env.step({agent: action})
        steps.append((obs, rewards, terms, truncs, infos))
        if terms["__all__"] or truncs["__all__"] or len(steps) == until:
            return steps


def test_a_turn_based_pettingzoo_id_builds_the_turn_based_view():
    env = PettingZooEnv({"source": TICTACTOE})
    assert isinstance(env, TurnBasedEnv)
    space = env.observation_spaces["player_1"]
    assert space["observations"] == gym.spaces.Box(0.0, 1.0, (18,), np.float32)  # flattened
    assert space["action_mask"].shape == (9,)
    assert env.state_space.shape == (36,)  # both players' latest observations
    parallel = PettingZooEnv({"source": "pettingzoo:pettingzoo.classic.rps_v2:env"})
    assert type(parallel) is PettingZooEnv  # parallelizable AEC envs: aec_to_parallel as before


@pytest.mark.parametrize("source", [TICTACTOE, CONNECT_FOUR])
def test_only_the_acting_agent_observes_and_players_alternate(source):
    env = PettingZooEnv({"source": source})
    steps = play(env, seed=0, rng=np.random.default_rng(0))
    movers = [next(iter(obs)) for obs, *_ in steps[:-1]]
    assert all(len(obs) == 1 for obs, *_ in steps[:-1])
    assert all(first != second for first, second in zip(movers, movers[1:]))
    final_obs, rewards, terms, _, infos = steps[-1]
    assert set(final_obs) == set(rewards) == set(infos) == set(env.possible_agents)
    assert terms["__all__"] and all(terms[a] for a in env.possible_agents)
    for obs, *_ in steps:
        for agent, seen in obs.items():
            assert env.observation_spaces[agent].contains(seen)


def test_the_mask_is_the_legal_moves_and_a_masked_move_is_reported():
    env = PettingZooEnv({"source": TICTACTOE})
    obs, _ = env.reset(seed=0)
    assert obs["player_1"]["action_mask"].tolist() == [1] * 9
    obs, *_ = env.step({"player_1": 4})
    assert obs["player_2"]["action_mask"][4] == 0 and obs["player_2"]["action_mask"].sum() == 8
    obs, rewards, terms, _, infos = env.step({"player_2": 4})  # taken: PettingZoo ends the game
    assert terms["__all__"]
    assert infos["player_2"]["illegal"] == 1 and infos["player_1"]["illegal"] == 0
    assert rewards == {"player_1": 0.0, "player_2": -1.0}


def test_the_winners_and_the_losers_rewards_both_arrive():
    env = PettingZooEnv({"source": TICTACTOE})
    totals = []
    for seed in range(20):
        steps = play(env, seed=seed, rng=np.random.default_rng(seed))
        total = dict.fromkeys(env.possible_agents, 0.0)
        for obs, rewards, *_ in steps:
            assert set(rewards) <= set(obs)  # a reward comes with an observation
            for agent, reward in rewards.items():
                total[agent] += reward
        totals.append(tuple(total.values()))
    assert set(totals) <= {(1.0, -1.0), (-1.0, 1.0), (0.0, 0.0)}
    assert (1.0, -1.0) in totals and (-1.0, 1.0) in totals


def test_rewards_earned_between_turns_come_with_the_next_observation():
    env = TurnBasedEnv(GiftGame())
    obs, _ = env.reset(seed=0)
    delivered = []
    while True:
        ((agent, _),) = obs.items()
        obs, rewards, terms, _, _ = env.step({agent: 1})
        delivered.append(rewards)
        if terms["__all__"]:
            break
    # a gives b 1, b gives c 1, c gives a 1, twice; the last move (c's) also gives all 10.
    assert delivered[:5] == [{"b": 1.0}, {"c": 1.0}, {"a": 1.0}, {"b": 1.0}, {"c": 1.0}]
    assert delivered[5] == {"a": 11.0, "b": 10.0, "c": 10.0}


def test_the_global_state_joins_the_latest_observations():
    env = TurnBasedEnv(GiftGame())
    env.reset(seed=0)
    assert env.state().tolist() == [0.0, 0.0] + [0.0] * 4  # only a has observed
    env.step({"a": 2})  # masked on move 0: taken, and reported with a's next observation
    assert env.state().tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    env.step({"b": 0})
    obs, _, _, _, infos = env.step({"c": 0})
    assert obs["a"]["observations"].tolist() == [3.0, 0.0]
    assert infos["a"]["illegal"] == 1
    env.step({"a": 0})
    assert env.state().tolist() == [3.0, 0.0, 4.0, 1.0, 2.0, 2.0]


def test_bad_actions_are_refused_naming_the_agent():
    env = PettingZooEnv({"source": TICTACTOE})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="player_2"):
        env.step({"player_1": 0, "player_2": np.nan})
    with pytest.raises(ValueError, match="player_1's turn"):
        env.step({"player_2": 0})
    with pytest.raises(ValueError, match="intruder"):
        env.step({"player_1": 0, "intruder": 0})
    with pytest.raises(ValueError, match="player_1"):
        env.step({"player_1": 9})


def test_same_seed_same_games():
    games = [
        play(PettingZooEnv({"source": CONNECT_FOUR}), seed=3, rng=np.random.default_rng(5))
        for _ in range(2)
    ]
    first, second = ([step[0] for step in game] for game in games)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for agent in a:
            assert np.array_equal(a[agent]["observations"], b[agent]["observations"])


def test_tictactoe_passes_the_env_checks_with_pettingzoos_api_test():
    results = {r.name: r for r in check_env(TICTACTOE)}
    assert all(r.passed for r in results.values()), [r for r in results.values() if not r.passed]
    assert not results["pettingzoo api_test"].skipped
    assert not results["rllib multi-agent env check"].skipped


def test_the_batched_runner_hands_turn_based_envs_to_the_stock_sampler():
    assert PettingZooEnv.batched_reason({"source": TICTACTOE}) == (
        "turn-based env: the stock sampler runs it"
    )
    experiment = load_experiment(
        {
            "name": "ttt",
            "env": {"id": TICTACTOE},
            "algorithm": {"id": "ppo", "shared_policy": True},
            "stop": {"training_iteration": 1},
        }
    )
    choice = choose_sampler(experiment)
    assert choice.runner == "stock"
    assert choice.line() == (
        "sampler: stock (the batched runner cannot run this: turn-based env: the stock "
        "sampler runs it)"
    )


def test_games_against_random_play_are_seeded_and_alternate_seats():
    env = PettingZooEnv({"source": TICTACTOE})
    first = play_versus_random(env, None, games=40, seed=3)
    assert first == play_versus_random(env, None, games=40, seed=3)
    assert first["win"] + first["draw"] + first["loss"] == pytest.approx(1.0)
    assert {seat: r["games"] for seat, r in first["by_seat"].items()} == {
        "player_1": 20,
        "player_2": 20,
    }
    assert first["illegal_moves"] == 0


def test_a_player_that_ignores_the_mask_is_caught_and_loses():
    env = PettingZooEnv({"source": TICTACTOE})
    stubborn = play_versus_random(env, lambda agent, obs: 4, games=20, seed=0)
    assert stubborn["illegal_moves"] > 0  # the centre, taken by the opponent or itself
    assert stubborn["loss"] > 0.5


def test_a_player_that_takes_a_winning_move_beats_random_play():
    env = PettingZooEnv({"source": TICTACTOE})
    lines = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]

    def greedy(agent, obs):
        board = obs["observations"].reshape(9, 2)  # [mine, theirs] per cell
        legal = np.flatnonzero(obs["action_mask"])
        for side in (0, 1):  # win if possible, else block
            for move in legal:
                if any(move in line and board[list(line), side].sum() == 2 for line in lines):
                    return int(move)
        return 4 if 4 in legal else int(legal[0])

    smart = play_versus_random(env, greedy, games=100, seed=0)
    reference = play_versus_random(env, None, games=100, seed=0)
    assert smart["illegal_moves"] == 0
    assert smart["win"] > reference["win"] + 0.1


def test_illegal_moves_of_step_counts_only_agents_that_observed():
    class Agent:
        def __init__(self, illegal):
            self.illegal = illegal

        def get_infos(self, index):
            return {"illegal": self.illegal}

    class Episode:
        agent_episodes = {"player_1": Agent(1), "player_2": Agent(1)}

        def get_agents_that_stepped(self):
            return {"player_2"}

    assert illegal_moves_of_step(Episode()) == 1
