"""Meeting point: N agents meet at a place nobody tells them (a task family for meta-learning).

The rendezvous dynamics plus a ``goal`` reward toward a hidden meeting point, one per
named task (``variants``), as in MAML's 2-d navigation (Finn et al. 2017):
:class:`MeetingPointCore` and its RLlib view :class:`MeetingPointEnv`. Tasks, baselines
and scores: docs/environments.md ("meeting_point").
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from rl_platform.envs.base import CoreMultiAgentEnv, StepResult
from rl_platform.envs.rendezvous import RendezvousConfig, RendezvousCore

MEETING_RADIUS = 0.6
# The 16 points of the compass, counterclockwise from east.
_COMPASS = (
    "e", "ene", "ne", "nne", "n", "nnw", "nw", "wnw",
    "w", "wsw", "sw", "ssw", "s", "sse", "se", "ese",
)  # fmt: skip
MEETING_POINTS: dict[str, tuple[float, float]] = {
    name: (
        round(MEETING_RADIUS * math.cos(i * math.pi / 8), 6),
        round(MEETING_RADIUS * math.sin(i * math.pi / 8), 6),
    )
    for i, name in enumerate(_COMPASS)
}
MEETING_POINTS["center"] = (0.0, 0.0)


class MeetingPointConfig(RendezvousConfig):
    """Constructor arguments: rendezvous's plus the (unobserved) meeting point."""

    meeting_point: tuple[float, float] = Field(
        default=MEETING_POINTS["ne"], description="Where the agents should meet (x, y)."
    )


class MeetingPointCore(RendezvousCore):
    """B copies of the meeting-point dynamics (rendezvous plus a hidden goal)."""

    reward_components: ClassVar[tuple[str, ...]] = ("goal", "proximity", "effort")
    default_reward_weights: ClassVar[dict[str, float]] = {
        "goal": 1.0,
        "proximity": 0.5,
        "effort": 0.05,
    }
    variants: ClassVar[dict[str, dict[str, Any]]] = {
        name: {"meeting_point": point} for name, point in MEETING_POINTS.items()
    }

    def __init__(self, config: MeetingPointConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        self._goal = np.asarray(config.meeting_point, dtype=np.float32)

    def set_variant(self, name: str) -> None:
        """Switch to the task `name` of ``variants`` (a meeting point) from the next step."""
        if name not in self.variants:
            raise ValueError(f"unknown task {name!r}; expected one of {sorted(self.variants)}")
        self.config = self.config.model_copy(update=self.variants[name])
        self._goal = np.asarray(self.config.meeting_point, dtype=np.float32)

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:  # noqa: D102
        effort = self._move(actions)
        goal = -np.sqrt(np.square(self._pos - self._goal).sum(-1))
        components = {"goal": goal, "proximity": self._proximity(), "effort": -effort}
        return self.time_limit_result(components, self._t, self.config.episode_length)


class MeetingPointEnv(CoreMultiAgentEnv):
    """RLlib ``MultiAgentEnv`` of one meeting-point copy (PettingZoo: ``parallel_env``)."""

    core_cls = MeetingPointCore
    config_model = MeetingPointConfig
    variants: ClassVar[dict[str, dict[str, Any]]] = MeetingPointCore.variants

    def set_variant(self, name: str) -> None:
        """Switch the task (meeting point) from the next step on."""
        self.core.set_variant(name)


def parallel_env(**config: object):
    """PettingZoo ``ParallelEnv`` of the meeting-point env."""
    return MeetingPointEnv.parallel_env(**config)
