"""The policy server: a trained checkpoint's greedy actions over HTTP, on Ray Serve.

One Serve deployment with a FastAPI ingress (``/docs`` and ``/openapi.json`` describe
it). Each replica loads only the weights-only policy export (``policies/``: no RLlib
algorithm, no pickles) of the champion checkpoint and, for an A/B test, of a
challenger; requests are validated against the checkpoint's manifest, batched
(``@serve.batch``: many requests x N agents in one forward pass), optionally passed
through the run's safety shield, and answered with plain JSON actions.

Endpoints:

* ``POST /v1/act``: observations of 1 .. N agents -> their actions
  (:class:`~rl_platform.serving.schemas.ActRequest` / ``ActResponse``);
* ``POST /v1/feedback``: a reward for a session's decision (A/B test or store);
* ``GET /v1/ab``: the A/B report (Welch's t-test) from the feedback store;
* ``GET /v1/info``: env, agents, spaces, checkpoint ids, versions, A/B and shield
  settings and this replica's counts; ``GET /healthz``: liveness.

The server keeps no env state: the shield judges each constraint from the request's
observations (``BatchedCore.observed_violations``) and replaces an action that breaks
one with the fallback baseline's action for the same observations (else the env's
default action). Bad requests are 4xx with a one-paragraph ``message``, never 500.

Under attack (:mod:`rl_platform.serving.guard`): with a token file every endpoint wants
``Authorization: Bearer <token>`` (401 otherwise; a host other than loopback always has
one); request bodies are read within ``body_timeout_s`` in front of Serve, before they
take a replica's slot (408 after); past ``max_ongoing_requests`` + ``max_queued_requests``
a request gets 503 with ``Retry-After`` at once; feedback rewards must lie in the env's
reward range (422), and the A/B report leaves out whatever else the store holds.

How to run it::

    from rl_platform.serving.app import serve
    serve("runs/quickstart/20261125-101500", port=8000)          # blocks; Ctrl-C stops
    # curl -s localhost:8000/v1/info; POST /v1/act {"observations": {"agent_0": [...]}}
"""

import asyncio
import errno
import functools
import hashlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve as ray_serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from rl_platform.checkpoints import EXPORT_DIR, MANIFEST, read_manifest
from rl_platform.ray_session import init_ray, shutdown_ray
from rl_platform.serving import guard
from rl_platform.serving.schemas import (
    ABReport,
    ActRequest,
    ActResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    InfoResponse,
)
from rl_platform.version import __version__

log = logging.getLogger(__name__)
# In replicas: a child of Serve's logger, so lines land in the replica's Serve log.
replica_log = logging.getLogger("ray.serve.rl_platform")

APP_NAME = "rl_platform"
MAX_BODY_BYTES = guard.MAX_BODY_BYTES
MAX_ERRORS_IN_MESSAGE = 10
# Feedback rewards accepted when the env declares no `reward_range` (none of the
# platform's do: Gymnasium 1.x dropped Env.reward_range and PettingZoo never had one).
# Seven orders of magnitude above any platform env's per-step reward and above realistic
# per-decision business outcomes, yet it refuses the usual client bugs (a Unix time in s
# or ms, a sentinel such as 1e308 or DBL_MAX), and a million stored rewards keep their
# sums of squares (Welch's t-test, AWR's standardization) around 1e24, far from overflow.
DEFAULT_REWARD_BOUND = 1e9
STORE_PATH = Path("serving") / "feedback.sqlite"  # beside the champion's checkpoint dir
CHAMPION, CHALLENGER = "champion", "challenger"  # ab_test's arm names (imported lazily)


class ServingError(ValueError):
    """What was asked to be served cannot be: the message says what and why."""


# --------------------------------------------------------------------------- arms


@dataclass(frozen=True)
class ArmSpec:
    """One checkpoint to serve, resolved in the driver (plain data: it travels to replicas)."""

    checkpoint: str  # the checkpoint directory (holds policies/)
    run_dir: str | None
    id: str  # checkpoint name + short sha256 of the export
    manifest: dict[str, Any]
    safety: dict[str, Any] | None  # the run's safety section


def resolve_arm(path: str | Path) -> ArmSpec:
    """The checkpoint behind a checkpoint or run directory (a run: its best checkpoint).

    Raises:
        ServingError: nothing there, no policy export, a corrupt or unloadable one, or an
            env without a batched core.
    """
    from rl_platform.checkpoints import PolicyExportError
    from rl_platform.evaluation.suite import EvaluationError, resolve_target

    try:
        target = resolve_target(path)
        manifest = read_manifest(target.checkpoint)
        export = target.checkpoint / EXPORT_DIR
        digest = hashlib.sha256((export / MANIFEST).read_bytes())
        for module_id in sorted(manifest["modules"]):  # the weights it loads, nothing else
            digest.update((export / f"{module_id}.pt").read_bytes())
    except (EvaluationError, PolicyExportError, OSError) as err:
        raise ServingError(f"cannot serve {path}: {err}") from None
    return ArmSpec(
        checkpoint=str(target.checkpoint.resolve()),
        run_dir=str(target.run_dir.resolve()) if target.run_dir else None,
        id=f"{target.checkpoint.name}-{digest.hexdigest()[:12]}",
        manifest=manifest,
        safety=target.safety,
    )


@dataclass(frozen=True)
class ServerConfig:
    """Everything a replica needs, decided in the driver."""

    champion: ArmSpec
    challenger: ArmSpec | None = None
    split: float = 0.1
    shield: dict[str, Any] | None = None  # a SafetySpec as a dict; None: no shield
    store: str | None = None  # feedback store file; None: no store
    batching: bool = True
    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.002
    token_file: str | None = None  # requests need this file's bearer token; None: open
    reward_range: tuple[float, float] = (-DEFAULT_REWARD_BOUND, DEFAULT_REWARD_BOUND)
    body_timeout_s: float = guard.BODY_TIMEOUT_S  # a request body must arrive within it


# --------------------------------------------------------------------------- shield


class ObservationShield:
    """A safety shield that sees only observations: what a server can check.

    Like :class:`rl_platform.safety.Shield` (same spec, same fallback order: the
    fallback baseline's action, else the default action, else kept and flagged
    unresolved), but each constraint is judged by ``core.observed_violations`` from the
    observations and actions, and the fallback acts on the same observations.

    Raises:
        ServingError: the spec names an unknown constraint or fallback, or a constraint
            the env cannot judge from observations.
    """

    def __init__(self, core: Any, spec: Any) -> None:
        from rl_platform.safety import check_safety, fallback_name

        try:
            check_safety(spec, type(core))
        except ValueError as err:
            raise ServingError(f"the run's safety section: {err}") from None
        self.core = core
        self.spec = spec
        self.fallback = fallback_name(spec, type(core))
        self.names = tuple(c.name for c in spec.constraints)
        self.limits = tuple(float(c.limit) for c in spec.constraints)
        probe = np.zeros((1, core.num_agents, *core.observation_space.shape), np.float32)
        default = core.default_actions(probe)
        for name, limit in zip(self.names, self.limits):
            try:
                core.observed_violations(name, limit, probe, default)
            except NotImplementedError as err:
                raise ServingError(
                    f"cannot shield served actions: {err}. Serve without --shield, or drop "
                    f"{name!r} from the run's safety.constraints."
                ) from None
        self.counts = dict.fromkeys(self.names, 0)
        self.interventions = 0
        self.unresolved = 0
        self.agent_steps = 0

    def violations(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(B, N, C) bool: which agents' actions break which constraint."""
        out = np.zeros((*actions.shape[:2], len(self.names)), dtype=bool)
        for c, (name, limit) in enumerate(zip(self.names, self.limits)):
            out[..., c] = self.core.observed_violations(name, limit, obs, actions)
        return out

    def filter(
        self, obs: np.ndarray, actions: np.ndarray, present: np.ndarray
    ) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
        """Safe actions for observations (B, N, obs_dim) and actions (B, N, ...).

        Only agents where `present` (B, N) is true are judged and counted (the others
        are zero padding). Returns the actions (a copy where any was replaced) and, per
        batch row, its interventions as JSON-ready dicts.
        """
        rows: list[list[dict[str, Any]]] = [[] for _ in range(len(actions))]
        self.agent_steps += int(present.sum())
        violated = self.violations(obs, actions) & present[..., None]
        mask = violated.any(axis=-1)
        if not mask.any():
            return actions, rows
        safe = actions.copy()
        if self.fallback == "default":
            fallback = self.core.default_actions(obs)
        else:
            fallback = self.core.baseline_actions(self.fallback, obs)
        safe[mask] = np.asarray(fallback, dtype=actions.dtype)[mask]
        used_default = self.violations(obs, safe).any(axis=-1) & mask
        unresolved = np.zeros_like(mask)
        if used_default.any():
            safe[used_default] = self.core.default_action()
            unresolved = self.violations(obs, safe).any(axis=-1) & used_default
        self.interventions += int(mask.sum())
        self.unresolved += int(unresolved.sum())
        for b, i, c in np.argwhere(violated & mask[..., None]):
            self.counts[self.names[c]] += 1
            rows[b].append(
                {
                    "agent": f"agent_{int(i)}",
                    "constraint": self.names[c],
                    "limit": self.limits[c],
                    "original": actions[b, i].tolist(),
                    "replacement": safe[b, i].tolist(),
                    "unresolved": bool(unresolved[b, i]),
                }
            )
        return safe, rows

    def summary(self) -> dict[str, Any]:
        """Settings and counts as JSON-ready data."""
        return {
            "enabled": True,
            "constraints": [{"name": n, "limit": v} for n, v in zip(self.names, self.limits)],
            "fallback": self.fallback,
            "judged_from": "observations",
            "interventions": self.interventions,
            "unresolved": self.unresolved,
            "agent_steps": self.agent_steps,
            "counts": dict(self.counts),
        }


# --------------------------------------------------------------------------- the service


class RequestError(Exception):
    """A request that fits the schema but not the served policy; ``errors`` as pydantic's."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _space_info(space: gym.Space) -> dict[str, Any]:
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


def _same_space(a: gym.Space, b: gym.Space) -> bool:
    if isinstance(a, gym.spaces.Discrete) or isinstance(b, gym.spaces.Discrete):
        return type(a) is type(b) and a.n == b.n
    return a.shape == b.shape and np.array_equal(a.low, b.low) and np.array_equal(a.high, b.high)


def versions() -> dict[str, str]:
    """rl_platform, Ray, torch, FastAPI and pydantic versions of this process."""
    import fastapi
    import pydantic

    from rl_platform.checkpoints import runtime_versions

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


class PolicyService:
    """The server's work without Ray or HTTP: checks, batched actions, the shield.

    Loads each arm's export (:class:`~rl_platform.evaluation.policy.TrainedPolicy`),
    the env's batched core (one copy: baselines and constraints read observations
    only) and the shield.

    Raises:
        ServingError: arms with different envs, agents or spaces; a recurrent module (the
            server keeps no per-session state); a module that cannot act on the env's
            observations; a shield the env cannot apply from observations.
    """

    def __init__(self, config: ServerConfig) -> None:
        from rl_platform.evaluation.policy import TrainedPolicy

        self.config = config
        manifest = config.champion.manifest
        self.core = _core_of(config.champion)
        self.agents: list[str] = list(manifest["agents"])
        self.index = {a: i for i, a in enumerate(self.agents)}
        self.observation_space: gym.spaces.Box = self.core.observation_space
        self.action_space: gym.Space = self.core.action_space
        self.obs_dim = int(np.prod(self.observation_space.shape))
        self._low = self.observation_space.low.astype(np.float64)
        self._high = self.observation_space.high.astype(np.float64)
        self._discrete = isinstance(self.action_space, gym.spaces.Discrete)
        arms = {CHAMPION: config.champion}
        if config.challenger is not None:
            self._check_compatible(config.champion, config.challenger)
            arms[CHALLENGER] = config.challenger
        self.arms: dict[str, ArmSpec] = arms
        self.policies = {arm: TrainedPolicy(spec.checkpoint) for arm, spec in arms.items()}
        for arm, policy in self.policies.items():
            self._check_policy(arms[arm], policy)
        self.shield: ObservationShield | None = None
        if config.shield is not None:
            from rl_platform.config import SafetySpec

            self.shield = ObservationShield(self.core, SafetySpec.model_validate(config.shield))
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
        core = _core_of(challenger)
        for what in ("observation_space", "action_space"):
            if not _same_space(getattr(core, what), getattr(self.core, what)):
                raise ServingError(
                    f"the challenger's {what.replace('_', ' ')} {getattr(core, what)} differs "
                    f"from the champion's {getattr(self.core, what)}: an A/B test needs one"
                )

    def _check_policy(self, arm: ArmSpec, policy: Any) -> None:
        for module_id, module in policy.modules.items():
            if module.is_stateful():
                raise ServingError(
                    f"{arm.checkpoint}: module {module_id!r} is recurrent; the server keeps no "
                    "per-session state, so it serves feed-forward policies only"
                )
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
                _error(
                    ("body", "observations"),
                    f"{len(observations)} agents, the policy has {n}: {', '.join(self.agents)}",
                    "too_many_agents",
                )
            )
        unknown = [a for a in observations if a not in self.index]
        if unknown:
            errors.append(
                _error(
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
                    _error(
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
                    _error(
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

    def act(self, items: list[tuple[str, np.ndarray, np.ndarray]]) -> list[Decision]:
        """Decisions for requests ``(arm, obs (N, obs_dim), present (N,))``, one pass per arm."""
        out: list[Decision | None] = [None] * len(items)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(items))
        for arm, policy in self.policies.items():
            rows = [k for k, item in enumerate(items) if item[0] == arm]
            if not rows:
                continue
            obs = np.stack([items[k][1] for k in rows])
            present = np.stack([items[k][2] for k in rows])
            actions = self._postprocess(policy.actions(obs))
            interventions: list[list[dict[str, Any]]] = [[] for _ in rows]
            if self.shield is not None:
                actions, interventions = self.shield.filter(obs, actions, present)
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
            "observation_space": _space_info(self.observation_space),
            "action_space": _space_info(self.action_space),
            "checkpoint": _checkpoint_info(self.config.champion),
            "challenger": (
                _checkpoint_info(self.config.challenger) if self.config.challenger else None
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
            "requests": dict(self.requests),
            "versions": versions(),
        }


def _core_of(arm: ArmSpec) -> Any:
    """A one-copy core of the arm's env, with the config it trained on."""
    from rl_platform import registry
    from rl_platform.evaluation.rollout import make_core

    env_id, config = arm.manifest["env"]["id"], dict(arm.manifest["env"]["config"])
    try:
        level = config.get("task", registry.get_env(env_id).load().task_levels[0])
        return make_core(env_id, config, level, 1)
    except (KeyError, ValueError) as err:
        raise ServingError(f"{arm.checkpoint}: {err}") from None


def _checkpoint_info(arm: ArmSpec) -> dict[str, Any]:
    return {
        "id": arm.id,
        "path": arm.checkpoint,
        "algorithm": arm.manifest["algorithm"],
        "modules": {m: spec["module_class"] for m, spec in arm.manifest["modules"].items()},
        "versions": dict(arm.manifest.get("versions", {})),
    }


def _error(loc: tuple[Any, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


# --------------------------------------------------------------------------- HTTP layer


class RequestLimits:
    """ASGI middleware: request bodies over ``max_bytes`` get 413, non-JSON POSTs 415.

    The declared ``Content-Length`` is checked before anything is read, and the bytes
    actually streamed are counted (a chunked body has no length to declare). A body not
    received within the app's ``state.body_timeout_s`` gets 408. In front of Serve,
    :class:`~rl_platform.serving.guard.BodyDeadline` reads bodies before they take a
    replica's slot; this is the replica's own line where it is absent (a cluster whose
    Ray was started without :func:`~rl_platform.serving.guard.ingress_env`).
    """

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Check the request's size and type, then hand it on."""
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            declared = int(length) if length.isdigit() else None
            if declared is None:
                await _reply(scope, receive, send, 400, f"bad Content-Length {length!r}")
                return
            if declared > self.max_bytes:
                await _reply(scope, receive, send, 413, self._too_large(declared))
                return
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json" and not media.endswith(b"+json"):
            shown = media.decode("latin-1") or "none"
            message = f"Content-Type must be application/json, got {shown}"
            await _reply(scope, receive, send, 415, message)
            return
        received, complete = 0, False
        state = getattr(scope.get("app"), "state", None)
        timeout_s = float(getattr(state, "body_timeout_s", guard.BODY_TIMEOUT_S))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        async def counted() -> dict:
            nonlocal received, complete
            if complete:  # after the body: the client's disconnect, whenever it comes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except asyncio.TimeoutError:
                raise HTTPException(
                    408, f"request body not received within {timeout_s:g} s"
                ) from None
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._too_large(received, streamed=True))
            complete = not message.get("more_body", False)
            return message

        await self.app(scope, counted, send)

    def _too_large(self, size: int, streamed: bool = False) -> str:
        what = f"over {size - 1} bytes received" if streamed else f"{size} bytes"
        return f"request body too large: {what}, the limit is {self.max_bytes} bytes"


async def _reply(scope: dict, receive: Callable, send: Callable, status: int, msg: str) -> None:
    await JSONResponse({"message": msg, "detail": msg}, status_code=status)(scope, receive, send)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = list(loc[1:]) if len(loc) > 1 and loc[0] == "body" else list(loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def _plain_errors(errors: Any) -> list[dict[str, Any]]:
    """Errors as JSON-safe dicts: the offending input is left out (it may be NaN)."""
    plain = []
    for e in errors:
        item = {"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]}
        item["msg"] = str(e.get("msg", ""))
        item["type"] = str(e.get("type", ""))
        if e.get("type") == "json_invalid" and e.get("ctx"):
            item["msg"] += f": {e['ctx'].get('error')}"
        plain.append(item)
    return plain


def _validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    plain = _plain_errors(errors)
    shown = [f"{_location(e['loc'])}: {e['msg']}" for e in plain[:MAX_ERRORS_IN_MESSAGE]]
    more = len(plain) - len(shown)
    message = "invalid request: " + "; ".join(shown) + (f" (and {more} more)" if more else "")
    return JSONResponse({"message": message, "detail": plain}, status_code=422)


async def _on_validation_error(request: Any, exc: RequestValidationError) -> JSONResponse:
    return _validation_response(list(exc.errors()))


async def _on_http_error(request: Any, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(
        {"message": detail, "detail": detail},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _on_server_error(request: Any, exc: Exception) -> JSONResponse:
    replica_log.exception("unhandled error serving %s", request.url.path)
    return JSONResponse(
        {"message": f"internal error: {type(exc).__name__}: {exc}", "detail": None},
        status_code=500,
    )


def _challenger_id(config: ServerConfig) -> str:
    return config.challenger.id if config.challenger is not None else ""


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


ERRORS = {
    401: {"model": ErrorResponse, "description": "No or a wrong bearer token (when required)."},
    404: {"model": ErrorResponse, "description": "Unknown session or request; feedback off."},
    408: {"model": ErrorResponse, "description": "The body did not arrive in time."},
    413: {"model": ErrorResponse, "description": f"Body over {MAX_BODY_BYTES} bytes."},
    415: {"model": ErrorResponse, "description": "Content-Type is not JSON."},
    422: {"model": ErrorResponse, "description": "The body does not fit the schema or policy."},
    503: {"description": "The server is full: retry after the Retry-After header's seconds."},
}

api = FastAPI(
    title="rl_platform policy server",
    version=__version__,
    description=(
        "Greedy actions of a trained multi-agent policy (weights-only export), batched on "
        "Ray Serve, with an optional safety shield and A/B test. GET /v1/info says which "
        "agents, observation size and bounds the served policy takes."
    ),
)
api.add_middleware(RequestLimits, max_bytes=MAX_BODY_BYTES)
api.add_middleware(guard.BearerAuth)  # added last: outermost, before the body is read
api.add_exception_handler(RequestValidationError, _on_validation_error)
api.add_exception_handler(StarletteHTTPException, _on_http_error)
api.add_exception_handler(Exception, _on_server_error)


# The deployment's class is serialized when it is decorated (on import): everything its
# methods use must be defined above it.
@ray_serve.deployment(name="PolicyServer")
@ray_serve.ingress(api)
class PolicyServer:
    """One replica: a :class:`PolicyService` behind the HTTP API, with the feedback store."""

    def __init__(self, config: ServerConfig) -> None:
        import torch

        torch.set_num_threads(1)  # tiny MLPs: one thread per replica; scale with replicas
        self.config = config
        # Read by the middlewares (guard.BearerAuth, RequestLimits) of this replica's app.
        api.state.bearer_token = guard.read_token(config.token_file) if config.token_file else None
        api.state.body_timeout_s = config.body_timeout_s
        self.service = PolicyService(config)
        self.replica = ray_serve.get_replica_context().replica_tag
        self._act_batch.set_max_batch_size(config.max_batch_size)
        self._act_batch.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
        self.router = None
        self.store = None
        # One thread owns the store's writes, off the event loop.
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback")
        if config.challenger is not None or config.store is not None:
            from rl_platform.serving.ab_test import ABRouter, FeedbackStore

            split = config.split if config.challenger is not None else 0.0
            self.router = ABRouter(split, salt=f"{config.champion.id}|{_challenger_id(config)}")
            if config.store is not None:
                self.store = FeedbackStore(config.store)
        self._document_policy()

    def _document_policy(self) -> None:
        """Put the served policy's agents and observation size into the OpenAPI schema."""
        schema = api.openapi()
        body = schema.get("components", {}).get("schemas", {}).get("ActRequest", {})
        observations = body.get("properties", {}).get("observations")
        if observations is not None:
            observations["maxProperties"] = len(self.service.agents)
            observations["propertyNames"] = {"enum": list(self.service.agents)}
            values = observations.get("additionalProperties")
            if isinstance(values, dict) and values.get("type") == "array":
                values["minItems"] = values["maxItems"] = self.service.obs_dim

    async def _run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, fn, *args)

    @ray_serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _act_batch(self, items: list[tuple[str, np.ndarray, np.ndarray]]) -> list[Decision]:
        return self.service.act(items)

    @api.get("/healthz", response_model=HealthResponse, tags=["service"])
    async def healthz(self) -> HealthResponse:
        """Liveness: 200 while this replica answers."""
        return HealthResponse()

    @api.get("/v1/info", response_model=InfoResponse, tags=["service"])
    async def info(self) -> dict[str, Any]:
        """Env, agents, spaces, checkpoints, versions, A/B and shield settings, counts."""
        info = self.service.info()
        info["ab"] = {
            "enabled": self.config.challenger is not None,
            "split": self.config.split if self.config.challenger is not None else 0.0,
            "store": self.config.store,
            "reward_range": list(self.config.reward_range),
        }
        info["replica"] = self.replica
        return info

    @api.post("/v1/act", response_model=ActResponse, responses=ERRORS, tags=["policy"])
    async def act(self, request: ActRequest) -> dict[str, Any]:
        """Actions of the agents whose observations the request carries.

        With an A/B test the session's arm answers (sessionless requests: the champion)
        and the decision is recorded for feedback.
        """
        try:
            obs, present = self.service.parse(request)
        except RequestError as err:
            raise RequestValidationError(err.errors) from None
        session = request.session_id
        arm = self.router.arm(session) if self.router is not None else CHAMPION
        item = (arm, obs, present)
        if self.config.batching:
            decision = await self._act_batch(item)
        else:
            decision = self.service.act([item])[0]
        actions = self.service.actions_json(decision, present)
        request_id = uuid.uuid4().hex
        for entry in decision.interventions:
            replica_log.info(
                "shield: request %s agent %s broke %s (limit %g): %s -> %s%s",
                request_id,
                entry["agent"],
                entry["constraint"],
                entry["limit"],
                entry["original"],
                entry["replacement"],
                " (unresolved)" if entry["unresolved"] else "",
            )
        if self.store is not None and session is not None:
            observed = {a: request.observations[a] for a in actions}
            await self._run(self.store.record_decision, session, arm, request_id, observed, actions)
        return {
            "request_id": request_id,
            "arm": arm,
            "checkpoint": self.service.arms[arm].id,
            "actions": actions,
            "interventions": decision.interventions,
        }

    @api.post("/v1/feedback", response_model=FeedbackResponse, responses=ERRORS, tags=["a/b test"])
    async def feedback(self, request: FeedbackRequest) -> dict[str, Any]:
        """Record a reward for the session's latest decision (or for ``request_id``)."""
        store = self._require_store()
        low, high = self.config.reward_range
        if not low <= request.reward <= high:
            raise RequestValidationError(
                [
                    _error(
                        ("body", "reward"),
                        f"{request.reward:g} is outside the accepted reward range "
                        f"[{low:g}, {high:g}] (GET /v1/info: ab.reward_range)",
                        "out_of_range",
                    )
                ]
            )
        try:
            arm = await self._run(
                store.record_feedback, request.session_id, request.reward, request.request_id
            )
        except KeyError as err:
            raise HTTPException(404, str(err.args[0] if err.args else err)) from None
        return {
            "status": "recorded",
            "session_id": request.session_id,
            "request_id": request.request_id,
            "arm": arm,
        }

    @api.get("/v1/ab", response_model=ABReport, responses=ERRORS, tags=["a/b test"])
    async def ab(self) -> dict[str, Any]:
        """The A/B report: per arm n, mean, std, 95% CI; Welch's t-test; the verdict."""
        from rl_platform.serving.ab_test import ab_report

        store = self._require_store()
        report = await self._run(
            functools.partial(ab_report, store, reward_range=self.config.reward_range)
        )
        counts = await self._run(store.counts)
        split = self.config.split if self.config.challenger is not None else 0.0
        return {**_finite(report), "counts": counts, "split": split, "store": str(store.path)}

    def _require_store(self) -> Any:
        if self.store is None:
            raise HTTPException(
                404,
                "feedback is off: the server runs without an A/B test or feedback store "
                "(start it with a challenger or a store)",
            )
        return self.store

    def __del__(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()


# --------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class ServingInfo:
    """A running server: where it listens and what it serves."""

    url: str
    app_name: str
    checkpoint: str
    checkpoint_id: str
    challenger: str | None
    split: float
    shield: bool
    store: str | None
    handle: Any = field(default=None, repr=False)  # the app's DeploymentHandle
    direct_ingress: bool = False  # the replica listens on the port (no proxy hop)
    token_file: str | None = None  # requests need its bearer token; None: no auth
    token_created: bool = False  # the token file was generated by this call
    exposed: bool = False  # the host is not a loopback address: other machines reach it


def plan(
    checkpoint: str | Path,
    *,
    challenger: str | Path | None = None,
    split: float = 0.1,
    shield: bool = False,
    store: str | Path | None = None,
    batching: bool = True,
    max_batch_size: int = 32,
    batch_wait_timeout_s: float = 0.002,
    token_file: str | Path | None = None,
    reward_range: tuple[float, float] | None = None,
    body_timeout_s: float = guard.BODY_TIMEOUT_S,
) -> ServerConfig:
    """Resolve and check what to serve, in this process, before anything starts.

    Builds the replica's :class:`PolicyService` once, so every error a replica would
    hit at startup is raised here, as a :class:`ServingError` saying what is wrong.
    ``reward_range`` None: the env's (:func:`env_reward_range`).
    """
    if not 0.0 <= split <= 1.0:
        raise ServingError(f"split must be in [0, 1] (the challenger's share), got {split!r}")
    if max_batch_size < 1 or batch_wait_timeout_s < 0:
        raise ServingError(
            f"max_batch_size must be >= 1 and batch_wait_timeout_s >= 0, got "
            f"{max_batch_size} and {batch_wait_timeout_s}"
        )
    if not (math.isfinite(body_timeout_s) and body_timeout_s > 0):
        raise ServingError(
            f"body_timeout_s must be a positive number of seconds, got {body_timeout_s!r}"
        )
    if reward_range is not None:
        reward_range = _check_reward_range(reward_range)
    if token_file is not None:
        try:
            guard.read_token(token_file)
        except guard.TokenFileError as err:
            raise ServingError(str(err)) from None
        token_file = Path(token_file).expanduser().resolve()
    champion = resolve_arm(checkpoint)
    rival = resolve_arm(challenger) if challenger is not None else None
    safety = None
    if shield:
        if champion.safety is None:
            where = champion.run_dir or f"no run directory above {champion.checkpoint}"
            raise ServingError(
                f"--shield needs the run's safety section, and {where} has none "
                "(config.yaml: safety: {constraints: [...]})"
            )
        if not champion.safety.get("enabled", True):
            raise ServingError(
                f"--shield: the safety section of {champion.run_dir} is disabled (enabled: false)"
            )
        safety = champion.safety
    store_path = None
    if store is not None or rival is not None:
        store_path = Path(store) if store is not None else Path(champion.checkpoint).parent
        if store is None:
            store_path = store_path / STORE_PATH
        store_path.parent.mkdir(parents=True, exist_ok=True)
        store_path = store_path.resolve()
    config = ServerConfig(
        champion=champion,
        challenger=rival,
        split=float(split),
        shield=safety,
        store=str(store_path) if store_path else None,
        batching=batching,
        max_batch_size=int(max_batch_size),
        batch_wait_timeout_s=float(batch_wait_timeout_s),
        token_file=str(token_file) if token_file is not None else None,
        reward_range=reward_range or env_reward_range(champion.manifest["env"]["id"]),
        body_timeout_s=float(body_timeout_s),
    )
    PolicyService(config)  # fail here, clearly, not in a replica
    if store_path is not None:
        from rl_platform.serving.ab_test import FeedbackStore, FeedbackStoreError

        try:
            FeedbackStore(store_path).close()
        except (FeedbackStoreError, OSError) as err:
            raise ServingError(f"feedback store {store_path}: {err}") from None
    return config


def _check_reward_range(reward_range: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in reward_range)
    except (TypeError, ValueError):
        raise ServingError(
            f"reward_range must be two numbers (low, high), got {reward_range!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ServingError(
            f"reward_range must be two finite numbers with low < high, got ({low:g}, {high:g})"
        )
    return low, high


def env_reward_range(env_id: str) -> tuple[float, float]:
    """The feedback rewards accepted for ``env_id``: its declared ``reward_range``, clipped.

    An env class may declare ``reward_range = (low, high)`` (Gymnasium 0.x style); an
    unbounded or missing side is +-:data:`DEFAULT_REWARD_BOUND`. No platform env declares
    one, so theirs is +-1e9.
    """
    from rl_platform import registry

    low, high = -DEFAULT_REWARD_BOUND, DEFAULT_REWARD_BOUND
    entry = registry.get_env(env_id)
    declared = getattr(entry.load(), "reward_range", None) if entry is not None else None
    try:
        lo, hi = (float(v) for v in declared)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return low, high
    low = lo if math.isfinite(lo) else low
    high = hi if math.isfinite(hi) else high
    return (low, high) if low < high else (-DEFAULT_REWARD_BOUND, DEFAULT_REWARD_BOUND)


def default_max_ongoing_requests(max_batch_size: int) -> int:
    """Requests a replica works on at once: enough to fill a batch (Serve's default is 5)."""
    return max(4 * max_batch_size, 16)


def build_app(
    config: ServerConfig,
    *,
    num_replicas: int = 1,
    autoscaling_config: dict[str, Any] | None = None,
    replica_cpus: float = 1.0,
    access_log: bool = True,
    max_ongoing_requests: int | None = None,
    max_queued_requests: int | None = None,
) -> Any:
    """The Serve application of a :func:`plan` (bind it with ``serve.run``).

    ``autoscaling_config`` (Serve's: ``min_replicas``, ``max_replicas``,
    ``target_ongoing_requests``, ...) replaces ``num_replicas``; ``access_log`` False
    drops Serve's line per request from the replica logs. Past ``max_ongoing_requests``
    (default :func:`default_max_ongoing_requests`) requests wait, up to
    ``max_queued_requests`` (default: as many) per replica (direct ingress) or per proxy;
    any more get 503 with ``Retry-After`` at once instead of waiting without end.
    """
    ongoing = max_ongoing_requests
    if ongoing is None:
        ongoing = default_max_ongoing_requests(config.max_batch_size)
    queued = ongoing if max_queued_requests is None else max_queued_requests
    if ongoing < 1 or queued < 1:
        raise ServingError(
            f"max_ongoing_requests and max_queued_requests must be >= 1, got {ongoing} and {queued}"
        )
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": replica_cpus},
        "logging_config": {"enable_access_log": access_log},
        "max_ongoing_requests": int(ongoing),
        "max_queued_requests": int(queued),
        "backpressure_config": {"status_code": 503, "retry_after_s": guard.RETRY_AFTER_S},
    }
    if autoscaling_config is not None:
        options["autoscaling_config"] = dict(autoscaling_config)
    else:
        options["num_replicas"] = int(num_replicas)
    return PolicyServer.options(**options).bind(config)


_started_ray = False


def serve(
    checkpoint: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    challenger: str | Path | None = None,
    split: float = 0.1,
    shield: bool = False,
    store: str | Path | None = None,
    num_replicas: int = 1,
    max_batch_size: int = 32,
    batch_wait_timeout_s: float = 0.002,
    blocking: bool = True,
    autoscaling_config: dict[str, Any] | None = None,
    batching: bool = True,
    replica_cpus: float = 1.0,
    access_log: bool = True,
    address: str | None = None,
    on_ready: Callable[[ServingInfo], None] | None = None,
    direct_ingress: bool | None = None,
    token_file: str | Path | None = None,
    reward_range: tuple[float, float] | None = None,
    max_ongoing_requests: int | None = None,
    max_queued_requests: int | None = None,
    body_timeout_s: float = guard.BODY_TIMEOUT_S,
) -> ServingInfo:
    """Serve a checkpoint (or a run's best) over HTTP at ``http://host:port/``.

    Everything is checked before Ray starts (:func:`plan`). Joins the Ray this process
    is connected to, else ``address`` / ``$RAY_ADDRESS``, else starts a private local
    Ray (no dashboard). Binds 127.0.0.1 unless ``host`` says otherwise.

    Args:
        checkpoint: a checkpoint directory (with ``policies/``) or a run directory.
        host: interface the HTTP proxy binds.
        port: its port.
        challenger: a second checkpoint for an A/B test (same env and agents).
        split: the share of sessions the challenger serves.
        shield: filter actions through the run's safety section (an error without one).
        store: the feedback store file; default with a challenger:
            ``<checkpoint>/../serving/feedback.sqlite``; without one, no store.
        num_replicas: replicas of the deployment (ignored with ``autoscaling_config``).
        max_batch_size: requests stacked into one forward pass at most.
        batch_wait_timeout_s: how long a batch waits to fill.
        blocking: serve until Ctrl-C, then shut down (else return at once).
        autoscaling_config: Serve's autoscaling settings instead of a fixed count.
        batching: False answers each request alone (for comparisons).
        replica_cpus: logical CPUs each replica reserves.
        access_log: Serve's log line per request (replica logs).
        address: a Ray cluster to join (it must see the checkpoint path).
        on_ready: called with the :class:`ServingInfo` once the app answers.
        direct_ingress: the replica itself listens on ``host:port`` (Ray Serve's direct
            ingress: no proxy hop, about 4x the requests/s of the proxy on 2 cores);
            None = when it can: one fixed replica in a Ray this call starts. Otherwise
            Serve's HTTP proxy listens there and spreads requests over the replicas.
        token_file: every request must carry ``Authorization: Bearer <token>`` with the
            token in this file (mode 0600). None: no token on a loopback ``host``;
            on any other host, the token in :func:`guard.default_token_path`,
            generated if absent.
        reward_range: feedback rewards accepted (inclusive); None: the env's
            (:func:`env_reward_range`).
        max_ongoing_requests: requests a replica works on at once (default:
            :func:`default_max_ongoing_requests`).
        max_queued_requests: requests that wait for one of those (per replica with
            direct ingress, per proxy otherwise; default: as many); more get 503 with
            ``Retry-After``.
        body_timeout_s: a request body must arrive within this (else 408).

    Returns:
        Where it listens and what it serves (after Ctrl-C when blocking).

    Raises:
        ServingError: what to serve is missing, incompatible or cannot be shielded; a
            token file that is missing, empty or readable by others.
    """
    global _started_ray
    import ray

    config = plan(
        checkpoint,
        challenger=challenger,
        split=split,
        shield=shield,
        store=store,
        batching=batching,
        max_batch_size=max_batch_size,
        batch_wait_timeout_s=batch_wait_timeout_s,
        token_file=token_file,
        reward_range=reward_range,
        body_timeout_s=body_timeout_s,
    )
    exposed = not guard.is_loopback(host)
    token_created = False
    if config.token_file is None and exposed:
        try:
            path, token_created = guard.ensure_token_file()
        except guard.TokenFileError as err:
            raise ServingError(f"--host {host} needs a bearer token: {err}") from None
        config = replace(config, token_file=str(path))
    if exposed:
        log.warning(
            "listening on %s: other machines can reach this server; requests need the bearer "
            "token in %s",
            host,
            config.token_file,
        )
    application = build_app(
        config,
        num_replicas=num_replicas,
        autoscaling_config=autoscaling_config,
        replica_cpus=replica_cpus,
        access_log=access_log,
        max_ongoing_requests=max_ongoing_requests,
        max_queued_requests=max_queued_requests,
    )
    address = address or os.environ.get("RAY_ADDRESS")
    if not address and not (ray.is_initialized() and _serve_running()):
        _check_port_free(host, int(port))  # a local proxy would fail on it, less clearly
    private = not address and not ray.is_initialized()
    direct = _direct_ingress_possible(direct_ingress, private, num_replicas, autoscaling_config)
    proxy_port = free_port(host) if direct else int(port)
    # Serve's processes read these settings when Ray starts them: the guards in front of
    # the HTTP servers (tokens, body deadlines) and direct ingress.
    serve_env = guard.ingress_env(config.body_timeout_s, config.token_file)
    if direct:
        serve_env.update(_direct_ingress_env(int(port)))
    if not ray.is_initialized():
        _started_ray = init_ray(address, env=serve_env)
    ray_serve.start(http_options={"host": host, "port": proxy_port})
    handle = ray_serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
    info = ServingInfo(
        url=f"http://{host}:{port}",
        app_name=APP_NAME,
        checkpoint=config.champion.checkpoint,
        checkpoint_id=config.champion.id,
        challenger=config.challenger.checkpoint if config.challenger else None,
        split=config.split if config.challenger else 0.0,
        shield=config.shield is not None,
        store=config.store,
        handle=handle,
        direct_ingress=direct,
        token_file=config.token_file,
        token_created=token_created,
        exposed=exposed,
    )
    log.info("serving %s (%s) at %s", info.checkpoint, info.checkpoint_id, info.url)
    if on_ready is not None:
        on_ready(info)
    if blocking:
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            shutdown()
    return info


def _direct_ingress_possible(
    asked: bool | None, private: bool, replicas: int, autoscaling: dict[str, Any] | None
) -> bool:
    """Whether the replica can listen on the port itself (see :func:`serve`)."""
    possible = private and replicas == 1 and autoscaling is None
    if asked and not possible:
        raise ServingError(
            "direct ingress needs one fixed replica in a Ray that `rlp serve` starts "
            "(no --address, no autoscaling): its settings are read when Ray starts"
        )
    return possible if asked is None else asked


def _direct_ingress_env(port: int) -> dict[str, str]:
    """Ray Serve settings (read by its processes at start) for a replica on ``port``."""
    return {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 1),  # exclusive: one port
        # A restarted replica takes the same port again at once.
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
        # No load balancer to deregister from: a stopping replica only finishes the
        # requests it has (Serve's default holds it 30 s).
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
    }


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS has free on ``host`` now (e.g. for the proxy that direct ingress bypasses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _serve_running() -> bool:
    import ray

    actors = ray.util.list_named_actors(all_namespaces=True)
    return any(a["name"] == "SERVE_CONTROLLER_ACTOR" and a["namespace"] == "serve" for a in actors)


def _check_port_free(host: str, port: int, wait_s: float = 3.0) -> None:
    """Raise :class:`ServingError` unless this machine can listen on ``host:port``.

    Waits up to ``wait_s`` for a port held by a server that is shutting down.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            family, kind, _, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            with socket.socket(family, kind) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(where)
            return
        except OSError as err:
            if time.monotonic() < deadline and err.errno == errno.EADDRINUSE:
                time.sleep(0.25)
                continue
            error = err
            break
    raise ServingError(
        f"cannot listen on {host}:{port}: {error.strerror or error}; is another server using "
        "it? Pick another port."
    )


def shutdown() -> None:
    """Stop Serve in the connected Ray, and the Ray that :func:`serve` started, if it did."""
    global _started_ray
    import ray

    if ray.is_initialized():
        ray_serve.shutdown()
        if _started_ray:
            shutdown_ray()  # none of its processes remain
            _started_ray = False
