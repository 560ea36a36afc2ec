"""The HTTP layer's limits and error replies: an ASGI middleware and FastAPI handlers.

Bodies over :data:`MAX_BODY_BYTES` get 413, non-JSON POSTs 415, bodies that do not arrive
in time 408; every refusal is JSON with a one-paragraph ``message``, never a bare 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rl_platform.serving import guard
from rl_platform.serving.schemas import ErrorResponse

# In replicas: a child of Serve's logger, so lines land in the replica's Serve log.
replica_log = logging.getLogger("ray.serve.rl_platform")

MAX_BODY_BYTES = guard.MAX_BODY_BYTES
MAX_ERRORS_IN_MESSAGE = 10


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
                await reply(scope, receive, send, 400, f"bad Content-Length {length!r}")
                return
            if declared > self.max_bytes:
                await reply(scope, receive, send, 413, self._too_large(declared))
                return
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json" and not media.endswith(b"+json"):
            shown = media.decode("latin-1") or "none"
            message = f"Content-Type must be application/json, got {shown}"
            await reply(scope, receive, send, 415, message)
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


async def reply(scope: dict, receive: Callable, send: Callable, status: int, msg: str) -> None:
    """Answer `status` with `msg` as a JSON error."""
    await JSONResponse({"message": msg, "detail": msg}, status_code=status)(scope, receive, send)


def location(loc: tuple[Any, ...] | list[Any]) -> str:
    """An error location as ``observations.agent_0[3]`` (``body`` for the whole body)."""
    parts = list(loc[1:]) if len(loc) > 1 and loc[0] == "body" else list(loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def plain_errors(errors: Any) -> list[dict[str, Any]]:
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


def validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    """422 with a one-paragraph message and the errors as plain data."""
    plain = plain_errors(errors)
    shown = [f"{location(e['loc'])}: {e['msg']}" for e in plain[:MAX_ERRORS_IN_MESSAGE]]
    more = len(plain) - len(shown)
    message = "invalid request: " + "; ".join(shown) + (f" (and {more} more)" if more else "")
    return JSONResponse({"message": message, "detail": plain}, status_code=422)


async def on_validation_error(request: Any, exc: RequestValidationError) -> JSONResponse:
    """Handler: a request that does not fit the schema or the policy."""
    return validation_response(list(exc.errors()))


async def on_http_error(request: Any, exc: StarletteHTTPException) -> JSONResponse:
    """Handler: an HTTP error as JSON with ``message`` (its headers kept)."""
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(
        {"message": detail, "detail": detail},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def on_server_error(request: Any, exc: Exception) -> JSONResponse:
    """Handler: anything else, logged, as a JSON 500."""
    replica_log.exception("unhandled error serving %s", request.url.path)
    return JSONResponse(
        {"message": f"internal error: {type(exc).__name__}: {exc}", "detail": None},
        status_code=500,
    )


def finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
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
