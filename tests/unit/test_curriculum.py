"""The curriculum's bookkeeping: promotion rule, demotion, schedule, normalization, state."""

import math

import pytest

from rl_platform.config import ConfigError, CurriculumSpec, load_experiment
from rl_platform.curriculum import Curriculum, score_ranges, set_task_of

LEVELS = ["easy", "medium", "hard"]
RANGES = {level: (0.0, 10.0) for level in LEVELS}


def curriculum(**promote) -> Curriculum:
    rule = {"min_episodes": 4, "window": 2, "threshold": 0.8, **promote}
    return Curriculum(CurriculumSpec(levels=LEVELS, promote=rule), RANGES)


def test_promotes_only_after_min_episodes_and_a_good_window():
    c = curriculum()
    c.record([("easy", 10.0)] * 3)
    assert c.update(1) is None  # 3 < min_episodes, however good
    c.record([("easy", 2.0)])
    assert c.update(2) is None  # window (10, 2) -> 0.6 < 0.8
    c.record([("easy", 9.0), ("easy", 9.0)])
    change = c.update(3)
    assert change is not None and (change.old, change.new, change.up) == ("easy", "medium", True)
    assert change.score == pytest.approx(0.9)
    assert (c.level, c.episodes_at_level, c.promotions, len(c.scores)) == ("medium", 0, 1, 0)


def test_goes_easy_medium_hard_and_stops_at_the_last_level():
    """The seed's get_current_config never advanced; this one does, one level at a time."""
    c = curriculum()
    for iteration in range(1, 4):
        c.record([(c.level, 9.5)] * 4)
        c.update(iteration)
    assert c.level == "hard" and c.promotions == 2
    c.record([("hard", 10.0)] * 10)
    assert c.update(4) is None and c.level == "hard"
    assert [h["to"] for h in c.history] == ["medium", "hard"]


def test_episodes_started_at_another_level_do_not_count():
    c = curriculum()
    c.record([("easy", 10.0)] * 4)
    c.update(1)
    counted = c.record([("easy", 10.0)] * 5 + [("medium", 1.0)])
    assert counted == 1 and c.episodes_at_level == 1
    assert c.window_score() == pytest.approx(0.1)


def test_demotes_below_the_floor_when_asked():
    c = curriculum(demote_below=0.3)
    c.record([("easy", 10.0)] * 4)
    c.update(1)
    c.record([("medium", 1.0)] * 4)
    change = c.update(2)
    assert change is not None and not change.up and c.level == "easy" and c.demotions == 1
    never = curriculum()
    never.record([("easy", 0.0)] * 8)
    assert never.update(1) is None


def test_scores_are_normalized_per_level_and_clipped():
    c = Curriculum(
        CurriculumSpec(levels=["easy", "hard"]), {"easy": (-10.0, 0.0), "hard": (5.0, 7.0)}
    )
    assert c.normalize("easy", -5.0) == pytest.approx(0.5)
    assert c.normalize("hard", 6.5) == pytest.approx(0.75)
    assert c.normalize("hard", 100.0) == 1.0 and c.normalize("hard", -100.0) == 0.0
    c.record([("easy", math.nan)])
    assert c.episodes_at_level == 0  # a NaN score is not an episode to count


def test_schedule_sets_the_level_by_iteration():
    spec = CurriculumSpec(levels=LEVELS, schedule={"easy": 0, "medium": 3, "hard": 5})
    c = Curriculum(spec, {})
    assert c.update(2) is None and c.level == "easy"
    assert c.update(3).new == "medium"
    assert c.update(4) is None
    assert c.update(7).new == "hard" and c.promotions == 2


def test_state_round_trip_and_refusal_of_other_levels():
    c = curriculum()
    c.record([("easy", 10.0)] * 4)
    c.update(1)
    c.record([("medium", 5.0)] * 2)
    restored = curriculum()
    restored.load_state_dict(c.state_dict())
    assert restored.metrics() == c.metrics()
    assert list(restored.scores) == list(c.scores) and restored.history == c.history
    other = Curriculum(CurriculumSpec(levels=["easy", "hard"]), RANGES)
    with pytest.raises(ValueError, match="levels"):
        other.load_state_dict(c.state_dict())


def test_score_ranges_span_random_to_the_best_baseline():
    spec = CurriculumSpec(levels=["easy", "hard"], score_range={"hard": (0.0, 1.0)})
    ranges = score_ranges("coverage", {}, spec, episodes=50)
    low, high = ranges["easy"]
    # Coverage: random covers ~60% of 6 equal targets per step, greedy all of them.
    assert 5.0 < low < 7.0 and high == pytest.approx(10.0)
    assert ranges["hard"] == (0.0, 1.0)


@pytest.mark.parametrize(
    ("curriculum_section", "fragment"),
    [
        ({"levels": ["easy", "easy"]}, "repeat"),
        ({"levels": ["easy"], "promote": {"min_episodes": 5, "window": 10}}, "window"),
        ({"levels": ["easy"], "promote": {"threshold": 0.5, "demote_below": 0.6}}, "below"),
        ({"levels": ["easy", "hard"], "schedule": {"easy": 2, "hard": 5}}, "at 0"),
        ({"levels": ["easy", "hard"], "schedule": {"easy": 0, "expert": 5}}, "not in levels"),
        ({"levels": ["easy"], "score_range": {"easy": [1.0, 1.0]}}, "low < high"),
        ({"levels": ["easy", "legendary"]}, "no task level 'legendary'"),
    ],
)
def test_bad_curriculum_is_refused(curriculum_section, fragment):
    raw = {
        "name": "c",
        "env": {"id": "coverage"},
        "algorithm": {"id": "ppo"},
        "curriculum": curriculum_section,
    }
    with pytest.raises(ConfigError, match=fragment):
        load_experiment(raw)


def test_envs_without_levels_have_no_curriculum():
    raw = {
        "name": "c",
        "env": {"id": "pettingzoo:mpe2.simple_spread_v3:parallel_env"},
        "algorithm": {"id": "ppo"},
        "curriculum": {"levels": ["easy"]},
    }
    with pytest.raises(ConfigError, match="no task levels"):
        load_experiment(raw)


class _Sub:
    def __init__(self) -> None:
        self.level = None
        self.unwrapped = self

    def set_task(self, level: str) -> None:
        self.level = level


class _Vector:
    def __init__(self, count: int) -> None:
        self.envs = [_Sub() for _ in range(count)]
        self.unwrapped = self


def test_set_task_reaches_every_sub_env_and_skips_runners_without_envs():
    vector = _Vector(3)
    assert set_task_of(vector, "hard") == 3
    assert [sub.level for sub in vector.envs] == ["hard"] * 3
    assert set_task_of(None, "hard") == 0
