"""The experiment's core sections, as pydantic models.

Env, network, rewards, curriculum, resources, stop, checkpoint and evaluation.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from rl_platform.config.base import ConfigModel
from rl_platform.registry import PETTINGZOO_PREFIX
from rl_platform.trust import UntrustedModuleError, check_env_factory


class EnvSpec(ConfigModel):
    """Which environment to train on and its constructor arguments."""

    id: str = Field(
        description="A registered env id (`rlp envs list`), vmas:<scenario> for a VMAS "
        "scenario, or pettingzoo:<module>:<factory> for a PettingZoo env: a module of "
        "pettingzoo.*, mpe2.* or vmas.* with factory env, "
        "parallel_env or raw_env, or a module trusted outside the YAML ($RLP_TRUSTED_MODULES "
        "or --trust-module); nothing else is imported."
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Arguments of the env, checked against its model."
    )

    @field_validator("id")
    @classmethod
    def _allowed_module(cls, env_id: str) -> str:
        if env_id.startswith(PETTINGZOO_PREFIX):
            try:
                check_env_factory(env_id, PETTINGZOO_PREFIX)
            except UntrustedModuleError as err:
                raise ValueError(err.reason) from None
        return env_id


class NetworkSpec(ConfigModel):
    """The policy and value networks' hidden layers."""

    hidden_sizes: tuple[PositiveInt, ...] = Field(
        default=(64, 64), min_length=1, description="Width of each hidden layer."
    )
    activation: Literal["tanh", "relu", "silu", "elu"] = "tanh"


class ShapingSpec(ConfigModel):
    """Potential-based shaping: each reward gets ``weight * (gamma * Phi(s') - Phi(s))``."""

    potential: str = Field(description="A potential the env declares (`rlp envs show <id>`).")
    weight: float = Field(default=1.0, description="Scale of the shaping term.")
    gamma: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Discount of the shaping term; null = the algorithm's gamma, which is "
        "what keeps the optimal policy unchanged.",
    )


class CoordinationSpec(ConfigModel):
    """A bonus for agents whose actions agree (or, with ``prefer: diverse``, differ)."""

    weight: NonNegativeFloat = Field(
        default=0.1, description="Bonus per unit of mean cosine similarity (the seed's 0.1)."
    )
    prefer: Literal["similar", "diverse"] = Field(
        default="similar",
        description="similar: reward agreeing with the others; diverse: penalize it.",
    )


class RewardsSpec(ConfigModel):
    """How each agent's reward is made from the env's reward components.

    The env's weighted components make the task reward; ``team`` mixes it with the agents'
    mean; ``difference`` replaces it with each agent's own contribution to the team reward;
    ``shaping`` and ``coordination`` add terms on top. Every part is logged separately.
    """

    weights: dict[str, float] = Field(
        default_factory=dict,
        description="Component name -> weight; components left out keep the env's default.",
    )
    team: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of each agent's reward replaced by the mean over agents: 0 keeps "
        "individual rewards, 1 makes every agent maximize the team's (cooperative training).",
    )
    difference: bool = Field(
        default=False,
        description="Difference rewards: an agent gets the team reward (mean over agents) "
        "minus the team reward had it taken the env's default action.",
    )
    shaping: ShapingSpec | None = None
    coordination: CoordinationSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RewardsSpec:
        for name, weight in self.weights.items():
            if not math.isfinite(weight):
                raise ValueError(f"weight of {name!r} must be a finite number, got {weight}")
        if self.difference and self.team:
            raise ValueError(
                "team and difference cannot be combined: a difference reward already "
                "measures each agent against the team reward (set team: 0)"
            )
        return self


class PromotionRule(ConfigModel):
    """When to advance to the next curriculum level (and, optionally, to fall back)."""

    min_episodes: PositiveInt = Field(default=100, description="Episodes played at a level first.")
    window: PositiveInt = Field(default=50, description="Recent episodes averaged.")
    threshold: float = Field(
        default=0.8, ge=0.0, le=1.0, description="Normalized score to pass, in [0, 1]."
    )
    demote_below: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Go back one level when the window's normalized score falls below this "
        "(after min_episodes at the level); null = never demote.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PromotionRule:
        if self.window > self.min_episodes:
            raise ValueError(
                f"window ({self.window}) must not exceed min_episodes ({self.min_episodes}): "
                "the window averages episodes played at the current level"
            )
        if self.demote_below is not None and self.demote_below >= self.threshold:
            raise ValueError(
                f"demote_below ({self.demote_below}) must be below threshold "
                f"({self.threshold}), or a run would bounce between levels"
            )
        return self


class CurriculumSpec(ConfigModel):
    """Task levels to move through, by performance (``promote``) or by ``schedule``.

    Scores are normalized per env and level: 0 is a random policy's mean episode score,
    1 the best of the env's hand-written baselines (or ``score_range`` where given).
    """

    levels: list[str] = Field(min_length=1, description="Levels in order; the env declares them.")
    promote: PromotionRule = Field(default_factory=PromotionRule)
    schedule: dict[str, NonNegativeInt] | None = Field(
        default=None,
        description="Level -> training iterations done before moving to it, instead of "
        "promotion (e.g. {easy: 0, medium: 20}: medium from the 21st iteration on); the "
        "first level must start at 0.",
    )
    score_range: dict[str, tuple[float, float]] | None = Field(
        default=None,
        description="Level -> (score of 0, score of 1) to normalize episode scores with, "
        "instead of random and the best baseline (needed for envs without baselines).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CurriculumSpec:
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"levels {self.levels} repeat a level")
        if self.schedule is not None:
            unknown = [level for level in self.schedule if level not in self.levels]
            if unknown:
                raise ValueError(f"schedule names levels not in levels: {unknown}")
            starts = [self.schedule[level] for level in self.levels if level in self.schedule]
            if self.levels[0] not in self.schedule or self.schedule[self.levels[0]] != 0:
                raise ValueError(f"schedule must start the first level {self.levels[0]!r} at 0")
            if starts != sorted(starts) or len(set(starts)) != len(starts):
                raise ValueError("schedule iterations must increase along levels")
        for level, (low, high) in (self.score_range or {}).items():
            if level not in self.levels:
                raise ValueError(f"score_range names level {level!r}, not in levels")
            if not (math.isfinite(low) and math.isfinite(high) and high > low):
                raise ValueError(f"score_range of {level!r} needs finite low < high")
        return self


class ResourcesSpec(ConfigModel):
    """How much of the Ray cluster one run uses, and fault tolerance."""

    num_env_runners: NonNegativeInt = Field(
        default=1, description="Remote sampling workers; 0 samples in the driver's process."
    )
    num_envs_per_env_runner: PositiveInt = Field(
        default=1, description="Env copies per runner (B of the batched sampler)."
    )
    sampler: Literal["auto", "batched", "stock"] = Field(
        default="auto",
        description=(
            "`auto` and `batched`: step the env's batched core over all copies and agents "
            "at once wherever it can run the experiment, else RLlib's stock runner (one "
            "line says why); `stock`: always RLlib's stock runner."
        ),
    )
    num_cpus_per_env_runner: PositiveFloat = 1
    num_learners: NonNegativeInt = Field(
        default=0,
        description=(
            "Remote learner workers; 0 trains in the algorithm's process. With 2 or more, "
            "each learner trains on train_batch_size_per_learner env steps of every "
            "iteration's batch and torch DDP averages their gradients."
        ),
    )
    num_cpus_per_learner: PositiveFloat | Literal["auto"] = Field(
        default="auto",
        description=(
            "CPUs Ray reserves for each remote learner; `auto`: 1 (0 with a GPU). A "
            "fraction lets several learners share a small machine's cores."
        ),
    )
    num_gpus_per_learner: NonNegativeFloat = 0
    rollout_fragment_length: PositiveInt | Literal["auto"] = "auto"
    max_env_runner_restarts: NonNegativeInt = Field(
        default=100, description="Crashed env runners are restarted this many times in all."
    )
    max_failures: NonNegativeInt = Field(
        default=0, description="Times Tune restarts the whole trial from its last checkpoint."
    )


class StopSpec(ConfigModel):
    """When training ends: the first criterion reached stops it."""

    training_iteration: PositiveInt | None = None
    env_steps: PositiveInt | None = Field(default=None, description="Env steps sampled in all.")
    episode_return_mean: float | None = Field(
        default=None, description="Mean episode return (summed over agents) to reach."
    )
    time_total_s: PositiveFloat | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> StopSpec:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError(
                "no stop criterion set: give one of training_iteration, env_steps, "
                "episode_return_mean, time_total_s"
            )
        return self


class CheckpointSpec(ConfigModel):
    """How often to checkpoint, how many to keep and how to rank them."""

    every: NonNegativeInt = Field(
        default=10, description="Checkpoint every N iterations; 0 = only at the end."
    )
    keep: PositiveInt | None = Field(default=3, description="Best checkpoints kept; null = all.")
    metric: str = Field(
        default="env_runners/episode_return_mean", description="Result key that ranks them."
    )
    mode: Literal["max", "min"] = "max"


EVALUATION_PREFIX = "evaluation/"


class EvaluationSpec(ConfigModel):
    """Greedy evaluation during training (a light subset of `rlp evaluate`).

    Every `every` iterations the policy plays `episodes` episodes on held-out env seeds at
    the current level; results appear under `evaluation/` (score, normalized,
    coordination, robustness) and, unless `checkpoint.metric` is set, rank checkpoints.
    """

    every: NonNegativeInt = Field(default=0, description="Evaluate every N iterations; 0 = off.")
    episodes: PositiveInt = Field(default=10, description="Episodes per evaluation.")
