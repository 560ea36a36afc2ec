"""The server's work without Ray or HTTP: request checks, batched actions, the shield.

:class:`PolicyService` is what each replica runs (and what :func:`~rl_platform.serving.app.plan`
builds once in the driver, so every startup error is raised there). The shield is the
platform's one :class:`~rl_platform.safety.Shield`, judging each constraint from the
request's observations (the server keeps no env state). Recurrent policies keep one
state per session (:class:`SessionStates`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import fastapi
import gymnasium as gym
import numpy as np
import pydantic

from rl_platform.checkpoints import runtime_versions
from rl_platform.config import SafetySpec
from rl_platform.envs.base import BatchedCore
from rl_platform.evaluation.policy import TrainedPolicy
from rl_platform.safety import OBSERVATIONS, Interventions, Shield, UnjudgedConstraint
from rl_platform.serving.ab_test import CHALLENGER, CHAMPION
from rl_platform.serving.arms import ArmSpec, ServerConfig, ServingError, checkpoint_info, core_of
from rl_platform.serving.schemas import ActRequest


def observation_shield(core: BatchedCore, spec: SafetySpec) -> Shield:
    """A shield on `core` that judges each constraint from observations alone.

    Same spec and fallback order as in training (the fallback baseline's action, else
    the default action, else kept and flagged unresolved); the fallback acts on the
    request's observations.

    Raises:
        ServingError: the spec names an unknown constraint or fallback, or a constraint
            the env cannot judge from observations.
    """
    try:
        return Shield(core, spec, max_entries=0, judge=OBSERVATIONS)
    except UnjudgedConstraint as err:
        raise ServingError(
            f"cannot shield served actions: {err}. Serve without --shield, or drop "
            f"{err.constraint!r} from the run's safety.constraints."
        ) from None
    except ValueError as err:
        raise ServingError(f"the run's safety section: {err}") from None


def shield_rows(record: Interventions, rows: int) -> list[list[dict[str, Any]]]:
    """A filter call's interventions per batch row, as JSON-ready dicts."""
    out: list[list[dict[str, Any]]] = [[] for _ in range(rows)]
    for entry in record.entries():
        item = entry.to_dict()
        del item["step"], item["copy"]
        out[entry.copy].append(item)
    return out


class RequestError(Exception):
    """A request that fits the schema but not the served policy; ``errors`` as pydantic's."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def space_info(space: gym.Space) -> dict[str, Any]:
    """A space as JSON-ready data (/v1/info)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"kind": "discrete", "shape": [], "dtype": str(space.dtype), "n": int(space.n)}
    return {
        "kind": "box",
        "shape": list(space.shape),
        "dtype": str(space.dtype),
        # Unbounded dimensions (+-inf) are null: JSON has no infinity.
        "low": [v if np.isfinite(v) else None for v in space.low.astype(float).ravel().tolist()],
        "high": [v if np.isfinite(v) else None for v in space.high.astype(float).ravel().tolist()],
    }


def same_space(a: gym.Space, b: gym.Space) -> bool:
    """Whether two spaces are the same kind, shape and bounds."""
    if isinstance(a, gym.spaces.Discrete) or isinstance(b, gym.spaces.Discrete):
        return type(a) is type(b) and a.n == b.n
    return a.shape == b.shape and np.array_equal(a.low, b.low) and np.array_equal(a.high, b.high)


def versions() -> dict[str, str]:
    """rl_platform, Ray, torch, FastAPI and pydantic versions of this process."""
    return {
        **runtime_versions(),
        "fastapi": fastapi.__version__,
        "pydantic": pydantic.__version__,
    }


@dataclass
class Decision:
    """One request's served actions (N, *action_shape) and its interventions."""

    actions: np.ndarray
    interventions: list[dict[str, Any]] = field(default_factory=list)


MAX_SESSIONS = 10_000
"""Recurrent sessions a replica keeps at most; the least recently used is forgotten."""


class SessionStates:
    """Each session's recurrent state per agent, for one arm's policy.

    A session's state starts at the modules' initial state, moves on with every request
    of the session (for the agents the request observes) and starts again after
    :meth:`end`; beyond ``limit`` sessions the least recently used is forgotten. Rows of
    one forward pass are gathered from and scattered back to their sessions, so
    concurrent sessions never share a state.
    """

    def __init__(self, policy: TrainedPolicy, limit: int = MAX_SESSIONS) -> None:
        self.policy = policy
        self.agents = policy.stateful_agents()
        self._columns = {a: policy.agents.index(a) for a in self.agents}  # in a request row
        self.limit = limit
        self._states: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def end(self, session: str) -> None:
        """Forget `session`'s state: its next request starts a new episode."""
        self._states.pop(session, None)

    def gather(self, sessions: list[str]) -> dict[str, Any]:
        """Agent -> the batched state of `sessions`' rows, in order."""
        import torch
        import tree

        out = {}
        for agent in self.agents:
            kept = [self._states.get(s, {}).get(agent) for s in sessions]
            rows = [self.policy.initial_state(agent) if k is None else k for k in kept]
            out[agent] = tree.map_structure(lambda *xs: torch.cat(xs), *rows)
        return out

    def scatter(self, sessions: list[str], states: dict[str, Any], present: np.ndarray) -> None:
        """Keep each row's new state for the agents its request observed (`present` (B, N))."""
        import tree

        for row, session in enumerate(sessions):
            kept = self._states.pop(session, {})
            for agent, column in self._columns.items():
                if present[row, column]:
                    kept[agent] = tree.map_structure(
                        lambda x, r=row: x[r : r + 1].clone(), states[agent]
                    )
            self._states[session] = kept  # most recently used last
        while len(self._states) > self.limit:
            self._states.popitem(last=False)


class PolicyService:
    """The server's work without Ray or HTTP: checks, batched actions, the shield.

    Loads each arm's export (:class:`~rl_platform.evaluation.policy.TrainedPolicy`),
    the env's batched core (one copy: baselines and constraints read observations
    only) and the shield.

    Raises:
        ServingError: arms with different envs, agents or spaces; a module that cannot
            act on the env's observations; a shield the env cannot apply from observations.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        manifest = config.champion.manifest
        self.core = core_of(config.champion)
        self.agents: list[str] = list(manifest["agents"])
        self.index = {a: i for i, a in enumerate(self.agents)}
        self.observation_space: gym.spaces.Box = self.core.observation_space
        self.action_space: gym.Space = self.core.action_space
        self.obs_dim = int(np.prod(self.observation_space.shape))
        self._low = self.observation_space.low.astype(np.float64)
        self._high = self.observation_space.high.astype(np.float64)
        self._discrete = isinstance(self.action_space, gym.spaces.Discrete)
        masks = getattr(self.core, "action_masks", None)
        self.env_masks = callable(masks) and masks() is not None  # the env has action masks
        arms = {CHAMPION: config.champion}
        if config.challenger is not None:
            self._check_compatible(config.champion, config.challenger)
            arms[CHALLENGER] = config.challenger
        self.arms: dict[str, ArmSpec] = arms
        self.policies = {
            arm: TrainedPolicy.from_export(spec.export)
            if spec.export
            else TrainedPolicy(spec.checkpoint)
            for arm, spec in arms.items()
        }
        for arm, policy in self.policies.items():
            self._check_policy(arms[arm], policy)
        self.sessions = {
            arm: SessionStates(policy)
            for arm, policy in self.policies.items()
            if policy.stateful_agents()
        }
        self.stateful = bool(self.sessions)  # requests need a session_id
        self.shield: Shield | None = None
        if config.shield is not None:
            spec = SafetySpec.model_validate(config.shield)
            self.shield = observation_shield(self.core, spec)
        self.requests = dict.fromkeys(arms, 0)
        self.batches = 0
        self.largest_batch = 0

    def _check_compatible(self, champion: ArmSpec, challenger: ArmSpec) -> None:
        a, b = champion.manifest, challenger.manifest
        if a["env"]["id"] != b["env"]["id"]:
            raise ServingError(
                f"the challenger {challenger.checkpoint} plays env {b['env']['id']!r}, the "
                f"champion {champion.checkpoint} {a['env']['id']!r}: an A/B test needs one env"
            )
        if list(a["agents"]) != list(b["agents"]):
            raise ServingError(
                f"the challenger's agents {list(b['agents'])} differ from the champion's "
                f"{list(a['agents'])}: an A/B test needs the same agents"
            )
        core = core_of(challenger)
        for what in ("observation_space", "action_space"):
            if not same_space(getattr(core, what), getattr(self.core, what)):
                raise ServingError(
                    f"the challenger's {what.replace('_', ' ')} {getattr(core, what)} differs "
                    f"from the champion's {getattr(self.core, what)}: an A/B test needs one"
                )

    def _check_policy(self, arm: ArmSpec, policy: Any) -> None:
        probe = np.zeros((2, len(self.agents), self.obs_dim), np.float32)
        try:
            actions = policy.actions(probe)
        except Exception as err:  # noqa: BLE001 (any failure: the export does not fit)
            raise ServingError(
                f"{arm.checkpoint}: the policy cannot act on the env's observations "
                f"({self.obs_dim} numbers per agent): {type(err).__name__}: {err}"
            ) from None
        expected = (2, len(self.agents), *self.action_space.shape)
        if actions.shape != expected:
            raise ServingError(
                f"{arm.checkpoint}: the policy's actions have shape {actions.shape[2:]}, the "
                f"env's action space {self.action_space}"
            )

    def parse(self, request: ActRequest) -> tuple[np.ndarray, np.ndarray]:
        """A request's observations as a (N, obs_dim) float32 row and the (N,) agents in it.

        Raises:
            RequestError: unknown agent ids, too many agents, a wrong observation size
                or values outside the observation space.
        """
        observations = request.observations
        errors: list[dict[str, Any]] = []
        n = len(self.agents)
        if len(observations) > n:
            errors.append(
                error_item(
                    ("body", "observations"),
                    f"{len(observations)} agents, the policy has {n}: {', '.join(self.agents)}",
                    "too_many_agents",
                )
            )
        unknown = [a for a in observations if a not in self.index]
        if unknown:
            errors.append(
                error_item(
                    ("body", "observations"),
                    f"unknown agent id(s) {', '.join(map(repr, unknown[:5]))}"
                    f"{' ...' if len(unknown) > 5 else ''}; the agents are "
                    f"{', '.join(self.agents)}",
                    "unknown_agent",
                )
            )
        if errors:
            raise RequestError(errors)
        row = np.zeros((n, self.obs_dim), dtype=np.float32)
        present = np.zeros(n, dtype=bool)
        for agent, values in observations.items():
            loc = ("body", "observations", agent)
            if len(values) != self.obs_dim:
                errors.append(
                    error_item(
                        loc,
                        f"{len(values)} numbers, the observation has {self.obs_dim}",
                        "wrong_length",
                    )
                )
                continue
            obs = np.asarray(values, dtype=np.float64)
            outside = (obs < self._low) | (obs > self._high)
            if outside.any():
                k = int(np.argmax(outside))
                errors.append(
                    error_item(
                        (*loc, k),
                        f"{values[k]!r} is outside the observation space "
                        f"[{self._low[k]:g}, {self._high[k]:g}]"
                        + (f" ({int(outside.sum())} values are)" if outside.sum() > 1 else ""),
                        "out_of_bounds",
                    )
                )
                continue
            i = self.index[agent]
            row[i] = obs
            present[i] = True
        if errors:
            raise RequestError(errors)
        return row, present

    def check_session(self, request: ActRequest) -> None:
        """A recurrent policy's request names its session.

        Raises:
            RequestError: no ``session_id`` while a served policy is recurrent.
        """
        if self.stateful and request.session_id is None:
            raise RequestError(
                [error_item(("body", "session_id"), "the policy is recurrent and keeps a state "
                            "per session: send a session_id (and reset: true when an episode "
                            "starts)", "session_required")]
            )  # fmt: skip

    def end_session(self, arm: str, session: str | None) -> None:
        """Start `session` afresh on `arm` (a recurrent policy's next request: a new episode)."""
        if session is not None and arm in self.sessions:
            self.sessions[arm].end(session)

    def parse_masks(self, request: ActRequest) -> np.ndarray | None:
        """A request's action masks as (N, n_actions) float32 0/1 (ones where none), or None.

        Raises:
            RequestError: masks for continuous actions, for agents not observed in the
                request, of the wrong length, with values other than 0 and 1, or
                masking every action.
        """
        given = request.action_masks
        if not given:
            return None
        base = ("body", "action_masks")
        if not self._discrete:
            raise RequestError(
                [error_item(base, f"the actions are {self.action_space}: masks need discrete "
                            "actions", "masks_unsupported")]
            )  # fmt: skip
        size = int(self.action_space.n)
        masks = np.ones((len(self.agents), size), dtype=np.float32)
        errors: list[dict[str, Any]] = []
        for agent, values in given.items():
            loc = (*base, agent)
            if agent not in request.observations:
                errors.append(
                    error_item(loc, "a mask for an agent without an observation in this "
                               "request", "mask_without_observation")
                )  # fmt: skip
                continue
            if len(values) != size:
                errors.append(
                    error_item(loc, f"{len(values)} entries, the policy has {size} actions "
                               "(one 0 or 1 per action)", "wrong_length")
                )  # fmt: skip
                continue
            bad = [k for k, v in enumerate(values) if v not in (0, 1)]
            if bad:
                errors.append(
                    error_item((*loc, bad[0]), f"{values[bad[0]]!r}: a mask entry is 0 "
                               "(masked) or 1 (allowed)", "not_binary")
                )  # fmt: skip
                continue
            if not any(values):
                errors.append(
                    error_item(loc, "every action is masked: at least one must be allowed",
                               "all_masked")
                )  # fmt: skip
                continue
            masks[self.index[agent]] = values
        if errors:
            raise RequestError(errors)
        return masks

    def act(self, items: list[tuple[Any, ...]]) -> list[Decision]:
        """Decisions for requests ``(arm, obs (N, obs_dim), present (N,)[, masks[, session]])``.

        One forward pass per arm; ``masks`` (N, n_actions) 0/1 or None (all allowed); a
        recurrent arm's rows carry on their sessions' states (one request per session in
        a batch: a session's steps are sequential).
        """
        out: list[Decision | None] = [None] * len(items)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(items))
        for arm, policy in self.policies.items():
            rows = [k for k, item in enumerate(items) if item[0] == arm]
            if not rows:
                continue
            obs = np.stack([items[k][1] for k in rows])
            present = np.stack([items[k][2] for k in rows])
            given = [items[k][3] if len(items[k]) > 3 else None for k in rows]
            masks = None
            if any(m is not None for m in given):
                ones = np.ones((len(self.agents), int(self.action_space.n)), np.float32)
                masks = np.stack([ones if m is None else m for m in given])
            states = sessions = None
            if arm in self.sessions:
                sessions = [items[k][4] for k in rows]
                states = self.sessions[arm].gather(sessions)
            actions = self._postprocess(policy.actions(obs, masks, states))
            if sessions is not None:
                self.sessions[arm].scatter(sessions, states, present)
            interventions: list[list[dict[str, Any]]] = [[] for _ in rows]
            if self.shield is not None:
                actions, record = self.shield.filter(obs, actions, present)
                interventions = shield_rows(record, len(rows))
            if masks is not None:
                rows_, cols = np.indices(actions.shape)
                if not masks[rows_, cols, actions].all():  # a shield's fallback, say
                    raise FloatingPointError("the served actions include a masked one")
            self.requests[arm] += len(rows)
            for j, k in enumerate(rows):
                out[k] = Decision(actions[j], interventions[j])
        return out  # type: ignore[return-value] (every item's arm is one of the policies')

    def _postprocess(self, actions: np.ndarray) -> np.ndarray:
        if self._discrete:
            return np.asarray(actions, dtype=np.int64)
        if not np.isfinite(actions).all():
            raise FloatingPointError("the policy produced non-finite actions")
        space = self.action_space
        return np.clip(actions, space.low, space.high).astype(space.dtype, copy=False)

    def actions_json(self, decision: Decision, present: np.ndarray) -> dict[str, Any]:
        """The present agents' actions: lists of floats, or ints for discrete actions."""
        return {self.agents[i]: decision.actions[i].tolist() for i in np.flatnonzero(present)}

    def info(self) -> dict[str, Any]:
        """What is served, as /v1/info shows it (without the A/B store)."""
        manifest = self.config.champion.manifest
        return {
            "env": {"id": manifest["env"]["id"], "config": manifest["env"]["config"]},
            "algorithm": manifest["algorithm"],
            "agents": list(self.agents),
            "observation_space": space_info(self.observation_space),
            "action_space": space_info(self.action_space),
            "checkpoint": checkpoint_info(self.config.champion),
            "challenger": (
                checkpoint_info(self.config.challenger) if self.config.challenger else None
            ),
            "shield": self.shield.summary() if self.shield else {"enabled": False},
            "batching": {
                "enabled": self.config.batching,
                "max_batch_size": self.config.max_batch_size,
                "batch_wait_timeout_s": self.config.batch_wait_timeout_s,
                "batches": self.batches,
                "largest_batch": self.largest_batch,
                "mean_batch_size": sum(self.requests.values()) / max(self.batches, 1),
            },
            "action_masks": {
                "accepted": self._discrete,
                "env_has_masks": self.env_masks,
                "length": int(self.action_space.n) if self._discrete else None,
            },
            "sessions": {
                "recurrent": self.stateful,
                "active": sum(len(s) for s in self.sessions.values()),
                "max": MAX_SESSIONS,
            },
            "requests": dict(self.requests),
            "versions": versions(),
        }


def error_item(loc: tuple[Any, ...], msg: str, kind: str) -> dict[str, Any]:
    """One error as pydantic reports it: location, message, type."""
    return {"loc": loc, "msg": msg, "type": kind}
