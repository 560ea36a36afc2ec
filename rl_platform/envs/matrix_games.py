"""The two-step matrix game of the QMIX paper: a test of value factorization.

Rashid et al. 2018 (ICML), section 6.1 and Figure 4, generalized to N agents:
:class:`TwoStepGameCore` (the batched core) and its RLlib view :class:`TwoStepGameEnv`. The
game, its payoffs and baselines: docs/environments.md ("two_step_game").
"""

from __future__ import annotations

from typing import ClassVar, Literal

import gymnasium as gym
import numpy as np
from pydantic import Field

from rl_platform.envs import metrics
from rl_platform.envs.base import BatchedCore, CoreEnvConfig, CoreMultiAgentEnv, StepResult

STATE_1, STATE_2A, STATE_2B = 0, 1, 2
NUM_STATES = 3
SAFE_PAYOFF = 7.0  # any joint action in 2A
BEST_PAYOFF = 8.0  # every agent picks 1 in 2B
MISCOORDINATED_PAYOFF = 1.0  # agents disagree in 2B
WORST_PAYOFF = 0.0  # every agent picks 0 in 2B
EPISODE_LENGTH = 2


class TwoStepGameConfig(CoreEnvConfig):
    """Constructor arguments of the two-step game."""

    num_agents: int = Field(default=2, ge=2, le=64, description="The paper's game has 2.")
    discrete: bool = Field(
        default=True, description="False: a Box(-1, 1, (1,)) action, positive = action 1."
    )
    task: Literal["easy", "medium", "hard", "expert"] = Field(
        default="easy", description="All levels are the same game."
    )


class TwoStepGameCore(BatchedCore):
    """B copies of the two-step game."""

    reward_components: ClassVar[tuple[str, ...]] = ("payoff",)
    default_reward_weights: ClassVar[dict[str, float]] = {"payoff": 1.0}
    baselines: ClassVar[tuple[str, ...]] = ("safe", "optimal")
    state_fields: ClassVar[tuple[str, ...]] = ("_state", "_t")
    trace_fields: ClassVar[tuple[str, ...]] = ("choice", "state")

    def __init__(self, config: TwoStepGameConfig, batch_size: int) -> None:
        super().__init__(config, batch_size)
        self._n = config.num_agents
        self._state = np.zeros(batch_size, dtype=np.int64)
        self._t = np.zeros(batch_size, dtype=np.int64)
        self._choices = np.zeros((batch_size, self._n), dtype=np.int64)  # the last step's
        self._eye = np.eye(NUM_STATES, dtype=np.float32)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (NUM_STATES,), np.float32)
        self.state_space = gym.spaces.Box(0.0, 1.0, (NUM_STATES,), np.float32)
        self.action_space = (
            gym.spaces.Discrete(2)
            if config.discrete
            else gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        )
        # The paper's A and B (agent 0's first action picks state 2A or 2B).
        self.action_names = ("A", "B") if config.discrete else ("B if > 0",)

    @property
    def num_agents(self) -> int:  # noqa: D102
        return self._n

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> None:  # noqa: D102
        rows = slice(None) if mask is None else mask
        self._state[rows] = STATE_1
        self._t[rows] = 0

    def observe(self) -> np.ndarray:  # noqa: D102
        one_hot = self._eye[self._state]  # (B, 3)
        return np.repeat(one_hot[:, None], self._n, axis=1)

    def global_state(self) -> np.ndarray:  # noqa: D102
        return self._eye[self._state].copy()

    def _choose(self, actions: np.ndarray) -> np.ndarray:
        """Actions (B, N[, 1]) -> choices (B, N) in {0, 1}."""
        if self.config.discrete:
            return actions.astype(np.int64)
        return (actions[..., 0] > 0).astype(np.int64)

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:  # noqa: D102
        choices = self._choose(actions)
        self._choices = choices
        first = self._state == STATE_1
        ones = choices.sum(axis=1)
        payoff_2b = np.where(
            ones == self._n,
            BEST_PAYOFF,
            np.where(ones == 0, WORST_PAYOFF, MISCOORDINATED_PAYOFF),
        )
        payoff = np.where(
            first, 0.0, np.where(self._state == STATE_2A, SAFE_PAYOFF, payoff_2b)
        ).astype(np.float32)
        self._state = np.where(first, np.where(choices[:, 0] == 0, STATE_2A, STATE_2B), self._state)
        self._t += 1
        components = {"payoff": np.repeat(payoff[:, None], self._n, axis=1)}
        return StepResult(
            rewards=self.weigh(components),
            components=components,
            terminated=self._t >= EPISODE_LENGTH,
            truncated=np.zeros(self.batch_size, dtype=bool),
        )

    def trace(self) -> dict[str, np.ndarray]:
        """The last step's joint action and where it led, float64.

        ``choice`` (B, N) each agent's action (0 or 1); ``state`` (B,) the state after
        the step (0: state 1, 1: 2A, 2: 2B).
        """
        return {"choice": self._choices.astype(np.float64), "state": self._state.astype(np.float64)}

    @classmethod
    def coordination(
        cls, trace: dict[str, np.ndarray], actions: np.ndarray, alive: np.ndarray
    ) -> dict[str, float]:
        """How often the team played the optimal joint policy; rates over copies.

        A copy's first alive step is the game's first step, its second the second.

        * ``reached_2b``: the share of copies whose agent 0 picked 1 at the first step
          (the way to the payoff 8);
        * ``coordinated_in_2b``: of the copies in 2B, the share where every agent picked
          1 at the second step (0.0 when none reached 2B);
        * ``optimal_rate``: the share of copies that played the optimal joint action at
          both steps (reached 2B, then all picked 1: return 8);
        * ``score``: ``optimal_rate``.
        """
        alive = np.asarray(alive, dtype=bool)
        step = np.cumsum(alive, axis=0) * alive  # 1, 2, ... along each copy's episode
        choice = np.asarray(trace["choice"]) > 0.5  # (T, B, N)
        first = ((step == 1)[..., None] & choice)[..., 0].any(axis=0)  # agent 0 picked 1
        all_one = choice.all(axis=-1)
        second = ((step == 2) & all_one).any(axis=0)
        optimal = first & second
        reached = int(first.sum())
        return {
            "reached_2b": float(first.mean()),
            "coordinated_in_2b": float(optimal.sum() / reached) if reached else 0.0,
            "optimal_rate": float(optimal.mean()),
            "score": metrics.clip_unit(optimal.mean()),
        }

    def default_action(self) -> np.ndarray:  # noqa: D102
        return np.int64(0) if self.config.discrete else np.full(1, -1.0, dtype=np.float32)

    def baseline_actions(self, name: str, obs: np.ndarray) -> np.ndarray:  # noqa: D102
        choice = 0 if name == "safe" else 1
        shape = obs.shape[:-1] + self.action_space.shape
        if self.config.discrete:
            return np.full(shape, choice, dtype=np.int64)
        return np.full(shape, 2.0 * choice - 1.0, dtype=np.float32)


class TwoStepGameEnv(CoreMultiAgentEnv):
    """RLlib ``MultiAgentEnv`` of one two-step game (PettingZoo: ``parallel_env``)."""

    core_cls = TwoStepGameCore
    config_model = TwoStepGameConfig


def parallel_env(**config: object):
    """PettingZoo ``ParallelEnv`` of the two-step game."""
    return TwoStepGameEnv.parallel_env(**config)
