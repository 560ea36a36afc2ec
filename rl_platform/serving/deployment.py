"""The Serve deployment: one replica's FastAPI app around a service.

Each replica runs a :class:`~rl_platform.serving.service.PolicyService`.

The endpoints (``/v1/act``, ``/v1/feedback``, ``/v1/ab``, ``/v1/info``, ``/healthz``)
live on :class:`PolicyServer`; :func:`build_app` binds it with the replica count,
autoscaling and back-pressure options. No ``from __future__ import annotations`` here:
FastAPI and Serve read the endpoints' annotations at decoration time.
"""

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from ray import serve as ray_serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from rl_platform.serving import guard
from rl_platform.serving.ab_test import CHAMPION, ABRouter, FeedbackStore, ab_report
from rl_platform.serving.arms import ServerConfig, ServingError
from rl_platform.serving.asgi import (
    ERRORS,
    MAX_BODY_BYTES,
    RequestLimits,
    finite,
    on_http_error,
    on_server_error,
    on_validation_error,
)
from rl_platform.serving.schemas import (
    ABReport,
    ActRequest,
    ActResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    InfoResponse,
)
from rl_platform.serving.service import Decision, PolicyService, RequestError, error_item
from rl_platform.version import __version__

# In replicas: a child of Serve's logger, so lines land in the replica's Serve log.
replica_log = logging.getLogger("ray.serve.rl_platform")


def _challenger_id(config: ServerConfig) -> str:
    return config.challenger.id if config.challenger is not None else ""


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
api.add_exception_handler(RequestValidationError, on_validation_error)
api.add_exception_handler(StarletteHTTPException, on_http_error)
api.add_exception_handler(Exception, on_server_error)


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
        and the decision is recorded for feedback. A recurrent policy carries the
        session's state from its previous request (``reset``: from its initial state).
        """
        try:
            obs, present = self.service.parse(request)
            masks = self.service.parse_masks(request)
            self.service.check_session(request)
        except RequestError as err:
            raise RequestValidationError(err.errors) from None
        session = request.session_id
        arm = self.router.arm(session) if self.router is not None else CHAMPION
        if request.reset:
            self.service.end_session(arm, session)
        item = (arm, obs, present, masks, session)
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
                    error_item(
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
        """The A/B report: per-arm sessions; the always-valid test, interval and verdict."""
        store = self._require_store()
        report = await self._run(
            functools.partial(ab_report, store, reward_range=self.config.reward_range)
        )
        counts = await self._run(store.counts)
        split = self.config.split if self.config.challenger is not None else 0.0
        return {**finite(report), "counts": counts, "split": split, "store": str(store.path)}

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
    """The Serve application of a :func:`~rl_platform.serving.app.plan` (``serve.run`` it).

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
