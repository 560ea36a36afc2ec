"""The landmark env: start, moves, walls, arrival once, freezing, termination, levels."""

import numpy as np
import pytest

from rl_platform.envs.landmark import LandmarkConfig, LandmarkCore, LandmarkEnv

STAY, RIGHT, LEFT, UP, DOWN = range(5)


def core(**config):
    model = LandmarkConfig(**{"grid_size": 5, "episode_length": 20, "task": "expert", **config})
    c = LandmarkCore(model, batch_size=1)
    c.reset(np.random.default_rng(0))
    return c


def test_agents_start_in_the_center_and_the_landmark_sits_on_the_way_to_the_corner():
    c = core()
    assert (c._pos == 2).all()
    assert c._landmark.tolist() == [[4, 4]]
    c.switch_task("medium")
    assert c._landmark.tolist() == [[3, 3]]
    obs = c.observe()[0, 0]
    assert obs[2 * 5 + 2] == 1.0 and obs[:25].sum() == 1.0  # one-hot of cell (2, 2)
    assert obs[25:].tolist() == [0.75, 0.75]  # the landmark over grid_size - 1


def test_walls_clip_moves_and_arrival_pays_once_then_freezes():
    c = core(num_agents=2)
    for _ in range(3):
        result = c.step(np.array([[LEFT, DOWN]]), None)
    assert c._pos[0].tolist() == [[0, 2], [2, 0]]  # clipped at the walls
    assert result.rewards.sum() == 0.0
    moves = [[RIGHT, UP]] * 4 + [[UP, UP]] * 2  # agent 0: (0,2) -> (4,2) -> (4,4)
    paid = []
    for action in moves:
        result = c.step(np.array([action]), None)
        paid.append(result.components["arrival"][0].tolist())
    assert c._arrived[0].tolist() == [True, False]
    assert sum(p[0] for p in paid) == 1.0  # paid on the arrival step only
    c.step(np.array([[LEFT, STAY]]), None)
    assert c._pos[0, 0].tolist() == [4, 4]  # frozen on the landmark
    assert not result.terminated[0]


def test_episode_terminates_when_every_agent_arrived_with_success_for_all():
    env = LandmarkEnv({"grid_size": 5, "episode_length": 20, "task": "expert"})
    obs, _ = env.reset(seed=0)
    total = {a: 0.0 for a in env.possible_agents}
    for step in range(4):
        action = {a: RIGHT if step < 2 else UP for a in env.possible_agents}
        obs, rewards, terms, truncs, infos = env.step(action)
        for agent, reward in rewards.items():
            total[agent] += reward
    assert terms["__all__"] and not truncs["__all__"]
    assert total == {a: 1.0 for a in env.possible_agents}
    assert all(infos[a]["reward_components"]["success"] == 1.0 for a in env.possible_agents)


def test_time_limit_truncates_without_terminating():
    c = core(episode_length=3)
    results = [c.step(np.array([[STAY, STAY]]), None) for _ in range(3)]
    assert [bool(r.truncated[0]) for r in results] == [False, False, True]
    assert not any(bool(r.terminated[0]) for r in results)


@pytest.mark.parametrize(
    ("action", "offset"),
    [([0.9, 0.2], [1, 0]), ([-0.1, -0.6], [0, -1]), ([0.3, -0.4], [0, 0]), ([-5.0, 1.0], [-1, 0])],
)
def test_continuous_actions_move_along_the_larger_coordinate(action, offset):
    c = core(discrete=False, num_agents=1)
    c.step(np.array([[action]], dtype=np.float32), None)
    assert (c._pos[0, 0] - 2).tolist() == offset


def test_direct_baseline_arrives_after_the_manhattan_distance():
    c = core(num_agents=3)
    results = [c.step(c.baseline_actions("direct", c.observe()), None) for _ in range(4)]
    assert [bool(r.terminated[0]) for r in results] == [False, False, False, True]
    assert (c.potential("progress") == 0).all()


def test_the_wall_blocks_all_but_the_door_and_direct_goes_through_it():
    c = core(wall=True, task="medium", episode_length=10)  # start (2, 2), wall at x = 3
    c.step(np.array([[RIGHT, RIGHT]]), None)
    assert c._pos[0].tolist() == [[2, 2], [2, 2]]  # into the wall: no move
    c.reset(np.random.default_rng(0))
    results = [c.step(c.baseline_actions("direct", c.observe()), None) for _ in range(7)]
    # the medium landmark (3, 3) would sit in the wall: it moves behind it, to (4, 3)
    assert c._landmark.tolist() == [[4, 3]]
    # down 2 to the door row, right 2 through the door, up 3 to the landmark
    assert c._arrived.all() and bool(results[-1].terminated[0])
    assert not any(bool(r.terminated[0]) for r in results[:-1])
    with pytest.raises(ValueError, match="grid_size >= 4"):
        LandmarkConfig(wall=True, grid_size=3)
