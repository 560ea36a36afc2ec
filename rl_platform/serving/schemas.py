"""Request and response bodies of the policy server, as pydantic models (its OpenAPI).

What one model can check is checked here: types (no strings or booleans for numbers),
finite floats, lengths, no extra fields. What depends on the policy being served (its
agent ids, the observation size and bounds) is checked by the server against the
checkpoint's manifest, with errors of the same shape (:class:`ErrorResponse`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_ID_LENGTH = 200  # session, request and agent ids
MAX_AGENTS = 1024  # any policy's agents; the served one's count is checked by the server
MAX_OBS_DIM = 65_536

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A JSON number that is finite: no strings, booleans, NaN or infinities."""
Identifier = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_ID_LENGTH)]
Observation = Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_OBS_DIM)]
Action = list[float] | int
MaskValue = Annotated[int, Field(strict=True)]
"""One entry of an action mask: 1 (allowed) or 0 (masked); checked by the server."""
ActionMask = Annotated[list[MaskValue], Field(min_length=1, max_length=MAX_OBS_DIM)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActRequest(_Request):
    """Observations of some or all agents of one decision step.

    Agents left out are not acted for (the policy sees zeros in their place: a shared
    or centralized module needs every agent's column) and are absent from the response.
    """

    session_id: Identifier | None = Field(
        default=None,
        description=(
            "Who is asking: with an A/B test the session's arm is sticky and its decisions "
            "are recorded for feedback; without one, the champion answers and nothing is "
            "recorded. Required by a recurrent policy, which carries the session's state."
        ),
        examples=["user-42"],
    )
    observations: Annotated[
        dict[Identifier, Observation], Field(min_length=1, max_length=MAX_AGENTS)
    ] = Field(
        description=(
            "Agent id -> its observation: exactly obs_dim finite numbers within the "
            "observation space's bounds (GET /v1/info), for 1 .. N of the policy's agents."
        ),
        examples=[{"agent_0": [0.0, 0.1, -0.2]}],
    )
    reset: bool = Field(
        default=False,
        description=(
            "A recurrent policy (GET /v1/info: sessions.recurrent) keeps a state per "
            "session_id: true starts the session's episode afresh, from the initial state."
        ),
    )
    action_masks: (
        Annotated[dict[Identifier, ActionMask], Field(min_length=1, max_length=MAX_AGENTS)] | None
    ) = Field(
        default=None,
        description=(
            "Agent id -> its action mask (discrete actions only): one 0 (masked) or 1 "
            "(allowed) per action, at least one 1, for agents in `observations`. A served "
            "action is never a masked one; agents without a mask may take any action."
        ),
        examples=[{"agent_0": [1, 0, 1]}],
    )


class Intervention(BaseModel):
    """One agent's action replaced by the safety shield because it broke a constraint."""

    agent: str
    constraint: str
    limit: float
    original: Action = Field(description="The policy's action.")
    replacement: Action = Field(description="The action served instead.")
    unresolved: bool = Field(
        description="The replacement breaks a constraint too (no safe action was found)."
    )


class ActResponse(BaseModel):
    """The served actions of the agents in the request."""

    request_id: str = Field(description="This decision's id (for feedback).")
    arm: Literal["champion", "challenger"]
    checkpoint: str = Field(description="Id of the checkpoint that answered (GET /v1/info).")
    actions: dict[str, Action] = Field(
        description=(
            "Agent id -> action: a list of floats clipped to the action Box, or the index "
            "of a discrete action."
        )
    )
    interventions: list[Intervention] = Field(
        default_factory=list, description="What the safety shield replaced (if it is on)."
    )


class FeedbackRequest(_Request):
    """A reward for a session's latest decision, or for one decision of it."""

    session_id: Identifier
    reward: FiniteFloat = Field(
        description=(
            "A finite number within the server's accepted reward range (GET /v1/info: "
            "ab.reward_range; by default the env's, else +-1e9)."
        )
    )
    request_id: Identifier | None = Field(
        default=None, description="The decision rewarded; default: the session's latest."
    )


class FeedbackResponse(BaseModel):
    """Where a reward was recorded."""

    status: Literal["recorded"] = "recorded"
    session_id: str
    request_id: str | None
    arm: str


class HealthResponse(BaseModel):
    """Liveness: the replica answered."""

    status: Literal["ok"] = "ok"


class SpaceInfo(BaseModel):
    """A per-agent observation or action space."""

    kind: Literal["box", "discrete"]
    shape: list[int]
    dtype: str
    low: list[float | None] | None = Field(
        default=None, description="Box bounds (flattened); null where unbounded."
    )
    high: list[float | None] | None = None
    n: int | None = Field(default=None, description="Discrete: the number of actions.")


class CheckpointInfo(BaseModel):
    """One served checkpoint (an A/B arm)."""

    id: str = Field(description="The checkpoint's name and the sha256 of its manifest, short.")
    path: str
    algorithm: str
    modules: dict[str, str] = Field(description="Module id -> its RLModule class.")
    versions: dict[str, str] = Field(description="rl_platform / Ray / torch it was exported by.")


class InfoResponse(BaseModel):
    """What is served, and how."""

    env: dict[str, Any] = Field(description="Env id and the config the policy trained on.")
    algorithm: str
    agents: list[str]
    observation_space: SpaceInfo
    action_space: SpaceInfo
    checkpoint: CheckpointInfo
    challenger: CheckpointInfo | None
    ab: dict[str, Any] = Field(description="A/B test: enabled, split, store.")
    shield: dict[str, Any] = Field(
        description="Safety shield: enabled, constraints, fallback, and this replica's counts."
    )
    batching: dict[str, Any]
    action_masks: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Whether requests may carry action masks (discrete actions), whether the env "
            "has them, and their length."
        ),
    )
    requests: dict[str, int] = Field(description="This replica's decisions served per arm.")
    versions: dict[str, str] = Field(description="rl_platform / Ray / torch of this server.")
    replica: str


class ABArm(BaseModel):
    """One arm's sessions (None where a figure is undefined or not finite).

    A session's outcome is the mean reward of its rewarded decisions; ``mean``, ``std``
    and ``ci95`` (fixed-sample Student t, a description of the arm) are over sessions.
    """

    sessions: int
    decisions: int = Field(description="Rewarded decisions in those sessions.")
    mean: float | None
    std: float | None
    ci95: list[float | None] | None
    n: int = Field(description="Sessions, as `sessions` (the name older clients read).")


class ABDifference(BaseModel):
    """Challenger - champion mean session outcome, with its always-valid interval."""

    estimate: float | None
    low: float | None
    high: float | None


class ABReport(BaseModel):
    """An always-valid sequential test (mSPRT) of challenger - champion, per session."""

    model_config = ConfigDict(extra="allow")

    unit: str = Field(description="What one observation is: a session.")
    test: str
    arms: dict[str, ABArm]
    difference: ABDifference = Field(
        description=(
            "Difference of mean session outcomes and its always-valid (1 - alpha) "
            "confidence sequence: valid whenever read (None before the first look)."
        )
    )
    p_value: float | None = Field(description="Always-valid p-value (1 before the first look).")
    significant: bool | None = Field(
        description="Whether the stopping rule has fired (None before the first look)."
    )
    stopped: bool = Field(description="The stopping rule (p_value <= alpha) has fired.")
    winner: str | None = Field(description="The better arm once stopped, else None.")
    stopped_at: dict[str, int] | None = Field(
        description="Sessions per arm at the look where the stopping rule fired."
    )
    verdict: str
    alpha: float
    tau: float = Field(description="Mixture scale, in standard deviations of a session.")
    min_sessions: int = Field(description="Sessions per arm before the first look.")
    min_samples: int = Field(description="As `min_sessions` (the name older clients read).")
    counts: dict[str, int] = Field(description="Rewarded decisions per arm.")
    ignored: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Stored rewards per arm left out of the statistics: not a finite number, or "
            "outside the accepted reward range (an older version or an edited store)."
        ),
    )
    split: float = Field(description="Share of sessions routed to the challenger.")
    store: str


class ErrorResponse(BaseModel):
    """A refused request: ``message`` says what was wrong in one paragraph."""

    message: str
    detail: Any = Field(
        default=None, description="Per-field errors (location, message, type) when validating."
    )
