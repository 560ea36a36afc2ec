"""Curriculum learning: task levels, the promotion rule, and the callback that drives envs.

Promotion (or a schedule by iteration) on normalized scores, 0 for a random policy and 1
for the env's best baseline at each level, from episodes played at the current level
only. :class:`CurriculumCallback` runs on the driver and on every env runner: runners
report finished episodes, the driver applies the rule after each iteration and sets the
task on every env; the state is checkpointed. The rule in full: docs/rewards.md.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from rl_platform import registry
from rl_platform.config import CurriculumSpec
from rl_platform.evaluation.baselines import RANDOM, episode_scores
from rl_platform.registry import env_config_of
from rl_platform.rewards import ENV_REWARD, EPISODE_INFO, TASK_INFO, episode_summary

log = logging.getLogger(__name__)

RESULT_KEY = "curriculum"
STATE_KEY = "curriculum_state"  # in the algorithm's MetricsLogger (checkpointed)
EPISODES_KEY = (RESULT_KEY, "episodes")  # env runners -> driver: (level, raw score)
BASELINE_EPISODES = 100


@dataclass(frozen=True)
class LevelChange:
    """A move to another level after an iteration (a promotion when `up`)."""

    iteration: int
    old: str
    new: str
    score: float
    up: bool


@dataclass
class Curriculum:
    """Where a run is in its curriculum; pure bookkeeping, no Ray.

    Args:
        spec: the experiment's ``curriculum`` section.
        score_range: level -> (raw score meaning 0, raw score meaning 1).
    """

    spec: CurriculumSpec
    score_range: dict[str, tuple[float, float]]
    index: int = 0
    episodes_at_level: int = 0
    promotions: int = 0
    demotions: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    scores: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.scores = deque(maxlen=self.spec.promote.window)
        missing = [lvl for lvl in self.spec.levels if lvl not in self.score_range]
        if missing and self.spec.schedule is None:
            raise ValueError(f"no score range for levels {missing}")

    @property
    def level(self) -> str:
        """The current level's name."""
        return self.spec.levels[self.index]

    def normalize(self, level: str, score: float) -> float:
        """A raw episode score at `level` mapped to [0, 1] (see the module docstring)."""
        low, high = self.score_range[level]
        return float(np.clip((score - low) / (high - low), 0.0, 1.0))

    def window_score(self) -> float:
        """Mean normalized score of the recent episodes at this level (nan if none)."""
        return float(np.mean(self.scores)) if self.scores else math.nan

    def record(self, episodes: list[tuple[str, float]]) -> int:
        """Count finished episodes (level, raw score); those at other levels are ignored.

        Returns:
            How many were counted.
        """
        counted = 0
        for level, score in episodes:
            if level != self.level or not math.isfinite(score):
                continue
            self.episodes_at_level += 1
            if self.spec.schedule is None:
                self.scores.append(self.normalize(level, score))
            counted += 1
        return counted

    def update(self, iteration: int) -> LevelChange | None:
        """Apply the schedule or the promotion rule after `iteration`; the change, if any."""
        if self.spec.schedule is not None:
            target = 0
            for i, level in enumerate(self.spec.levels):
                start = self.spec.schedule.get(level)
                if start is not None and iteration >= start:
                    target = i
            return self._move_to(target, iteration, self.window_score())
        rule = self.spec.promote
        if self.episodes_at_level < rule.min_episodes or len(self.scores) < rule.window:
            return None
        score = self.window_score()
        if score >= rule.threshold and self.index + 1 < len(self.spec.levels):
            return self._move_to(self.index + 1, iteration, score)
        if rule.demote_below is not None and score < rule.demote_below and self.index > 0:
            return self._move_to(self.index - 1, iteration, score)
        return None

    def _move_to(self, index: int, iteration: int, score: float) -> LevelChange | None:
        if index == self.index:
            return None
        up = index > self.index
        change = LevelChange(iteration, self.level, self.spec.levels[index], score, up)
        if index > self.index:
            self.promotions += 1
        else:
            self.demotions += 1
        self.history.append(
            {"iteration": iteration, "from": change.old, "to": change.new, "score": score}
        )
        self.index = index
        self.episodes_at_level = 0
        self.scores.clear()
        return change

    def metrics(self) -> dict[str, Any]:
        """What goes into each result under ``curriculum/``."""
        return {
            "level": self.index,
            "level_name": self.level,
            "episodes_at_level": self.episodes_at_level,
            "score": self.window_score(),
            "promotions": self.promotions,
            "demotions": self.demotions,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue (plain Python values)."""
        return {
            "index": self.index,
            "episodes_at_level": self.episodes_at_level,
            "promotions": self.promotions,
            "demotions": self.demotions,
            "history": list(self.history),
            "scores": list(self.scores),
            "levels": list(self.spec.levels),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (of a run with the same levels)."""
        if list(state.get("levels", [])) != list(self.spec.levels):
            raise ValueError(
                f"the checkpoint's curriculum levels {state.get('levels')} differ from "
                f"this experiment's {self.spec.levels}"
            )
        self.index = int(state["index"])
        self.episodes_at_level = int(state["episodes_at_level"])
        self.promotions = int(state["promotions"])
        self.demotions = int(state["demotions"])
        self.history = list(state["history"])
        self.scores.clear()
        self.scores.extend(state["scores"])


def score_ranges(
    env_id: str,
    env_config: dict[str, Any],
    spec: CurriculumSpec,
    episodes: int = BASELINE_EPISODES,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Per level, (random policy's mean score, best baseline's mean score).

    ``spec.score_range`` entries take precedence. Scores are mean per-agent returns of
    the env's task reward with the experiment's reward weights.
    """
    ranges = dict(spec.score_range or {})
    env_cls = registry.get_env(env_id).load()
    for level in spec.levels:
        if level in ranges:
            continue
        config = {**env_config, "task": level}
        low = float(episode_scores(env_id, RANDOM, config, episodes, seed).mean())
        high = max(
            float(episode_scores(env_id, name, config, episodes, seed).mean())
            for name in env_cls.baselines
        )
        if not high > low:
            raise ValueError(
                f"{env_id!r} at level {level!r}: no baseline beats random ({high} <= {low}); "
                "give curriculum.score_range for it"
            )
        ranges[level] = (low, high)
    return ranges


def checkpointed_state(algorithm: Any, key: str) -> dict[str, Any] | None:
    """The state a driver-side callback keeps under `key` in the algorithm's metrics.

    The algorithm's MetricsLogger is checkpointed, so after ``on_checkpoint_loaded``
    this is what the callback stored before the checkpoint; None when it stored nothing.
    """
    try:
        state = algorithm.metrics.peek(key)
    except KeyError:
        return None
    return state if isinstance(state, dict) else None


def set_task_everywhere(algorithm: Any, level: str) -> int:
    """Call ``set_task(level)`` on every env of the algorithm's (and evaluation's) runners.

    Returns:
        How many envs were switched.
    """
    groups = (algorithm.env_runner_group, getattr(algorithm, "eval_env_runner_group", None))
    return sum(set_task_in_group(group, level) for group in groups if group is not None)


def set_task_in_group(group: Any, level: str, runner_ids: list[int] | None = None) -> int:
    """``set_task(level)`` on the envs of an env runner group (only `runner_ids` if given)."""

    def switch(runner: Any) -> int:
        return set_task_of(getattr(runner, "env", None), level)

    counts = group.foreach_env_runner(
        switch, local_env_runner=runner_ids is None, remote_worker_ids=runner_ids
    )
    return sum(c for c in counts if isinstance(c, int))


def set_task_of(env: Any, level: str) -> int:
    """Switch every sub-env of an env runner's (vector) env; how many were switched."""
    if env is None:  # the local runner of a run with remote runners has no env
        return 0
    subs = getattr(env.unwrapped, "envs", None) or [env]
    for sub in subs:
        sub.unwrapped.set_task(level)
    return len(subs)


class CurriculumCallback(RLlibCallback):
    """Drives a curriculum; :func:`callback_class` binds it to an experiment."""

    spec: ClassVar[dict[str, Any]] = {}  # curriculum spec, env id and env config

    def __init__(self) -> None:
        super().__init__()
        self.curriculum: Curriculum | None = None

    # ---- env runner side

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs):  # noqa: D102
        info = episode_summary(episode)
        if info is None or metrics_logger is None or info.get(TASK_INFO) is None:
            return
        level, score = info[TASK_INFO], info[EPISODE_INFO][ENV_REWARD]
        metrics_logger.log_value(EPISODES_KEY, (level, score), reduce="item_series")
        metrics_logger.log_value((RESULT_KEY, "played", level), 1, reduce="sum")

    # ---- driver side

    def on_algorithm_init(self, *, algorithm, **kwargs):  # noqa: D102
        spec = CurriculumSpec.model_validate(self.spec["curriculum"])
        ranges = {}
        if spec.schedule is None:
            ranges = score_ranges(self.spec["env_id"], self.spec["env_config"], spec)
        self.curriculum = Curriculum(spec, ranges)
        self._publish(algorithm)

    def on_checkpoint_loaded(self, *, algorithm, **kwargs):  # noqa: D102
        if self.curriculum is None:
            return
        state = checkpointed_state(algorithm, STATE_KEY)
        if state is not None:
            self.curriculum.load_state_dict(state)
            log.info("curriculum restored at level %s", self.curriculum.level)
        self._publish(algorithm)

    def on_env_runners_recreated(self, *, env_runner_group, env_runner_indices, **kwargs):  # noqa: D102
        if self.curriculum is not None:
            set_task_in_group(env_runner_group, self.curriculum.level, list(env_runner_indices))

    def on_train_result(self, *, algorithm, result, **kwargs):  # noqa: D102
        curriculum = self.curriculum
        if curriculum is None:
            return
        episodes = _pop_episodes(result)
        curriculum.record(episodes)
        change = curriculum.update(int(result.get("training_iteration", algorithm.iteration)))
        metrics = curriculum.metrics()
        metrics["changed"], metrics["change_score"] = 0, math.nan
        if change is not None:
            metrics["changed"], metrics["change_score"] = (1 if change.up else -1), change.score
            log.info("curriculum: %s -> %s (score %.3f)", change.old, change.new, change.score)
        self._publish(algorithm, switch=change is not None)
        result[RESULT_KEY] = metrics

    def _publish(self, algorithm: Any, switch: bool = True) -> None:
        """Switch the envs (when asked) and store the state with the algorithm's metrics."""
        if switch:
            set_task_everywhere(algorithm, self.curriculum.level)
        algorithm.metrics.log_value(STATE_KEY, self.curriculum.state_dict(), reduce="item")


def _pop_episodes(result: dict[str, Any]) -> list[tuple[str, float]]:
    """Take the env runners' (level, score) reports out of a result (and the state copy)."""
    result.pop(STATE_KEY, None)
    runners = result.get("env_runners", {})
    section = runners.get(RESULT_KEY, {})
    episodes = section.pop("episodes", []) if isinstance(section, dict) else []
    if isinstance(section, dict) and not section:
        runners.pop(RESULT_KEY, None)
    return [(str(level), float(score)) for level, score in episodes or []]


def callback_class(experiment: Any, env_config: dict[str, Any]) -> type[CurriculumCallback]:
    """A :class:`CurriculumCallback` subclass bound to the experiment's curriculum."""
    spec = {
        "curriculum": experiment.curriculum.model_dump(mode="json"),
        "env_id": experiment.env.id,
        "env_config": env_config,
    }
    return type("BoundCurriculumCallback", (CurriculumCallback,), {"spec": spec})


class CurriculumFeature(registry.Feature):
    """``curriculum:``: the callback that scores episodes and moves every env's level."""

    def callbacks(self, experiment: Any) -> list[type]:  # noqa: D102
        if experiment.curriculum is None:
            return []
        return [callback_class(experiment, env_config_of(experiment))]


FEATURE = CurriculumFeature()
