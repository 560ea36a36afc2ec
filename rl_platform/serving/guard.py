"""What stands between the network and the policy server: bearer tokens and body deadlines.

Two ASGI middlewares with no Ray import (Serve's proxy and replicas import this module):
:class:`BearerAuth` (``Authorization: Bearer <token>``, else 401) and :class:`BodyDeadline`
(a request's whole body within a deadline and a size limit, before it takes a replica
slot), installed in front of Serve by :func:`ingress_middlewares`. Token files:
:func:`read_token`, :func:`default_token_path`, :func:`ensure_token_file`. The status
codes and limits: docs/security.md (Serving).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
import secrets
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1 << 20  # 1 MiB: N x obs_dim numbers of any platform env fit many times
BODY_TIMEOUT_S = 5.0  # a whole request body must arrive within this (1 MiB at 200 KiB/s)
MAX_BODY_READERS = 256  # bodies read at once per server process; more wait outside: 503
RETRY_AFTER_S = 1  # the Retry-After of a 503 (full server): a second is enough to drain
MAX_TOKEN_LENGTH = 4096
TOKEN_FILE_NAME = "serve-token"

# Serve's processes read these when Ray starts them (see :func:`ingress_env`).
SERVE_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
BODY_TIMEOUT_ENV = "RLP_SERVE_BODY_TIMEOUT_S"
TOKEN_FILE_ENV = "RLP_SERVE_TOKEN_FILE"
INGRESS_CALLBACK = "rl_platform.serving.guard:ingress_middlewares"


class TokenFileError(ValueError):
    """A token file that cannot protect a server: the message says what and how to fix it."""


# --------------------------------------------------------------------------- tokens


def read_token(path: str | Path) -> str:
    """The bearer token in ``path``: one line of printable ASCII, readable by its owner only.

    Raises:
        TokenFileError: no such file, not a regular file, group or others may read or
            write it, empty, too long, or characters a header cannot carry.
    """
    path = Path(path).expanduser()
    try:
        info = path.stat()
    except OSError as err:
        raise TokenFileError(
            f"token file {path}: {err.strerror or err}; expected a file holding the bearer "
            "token (create one with: umask 077; python -c 'import secrets; "
            f"print(secrets.token_urlsafe(32))' > {path})"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise TokenFileError(f"token file {path} is not a regular file")
    if os.name == "posix" and info.st_mode & 0o077:
        raise TokenFileError(
            f"token file {path} has mode {stat.S_IMODE(info.st_mode):04o}: group or others "
            f"may read or change the token. Expected mode 0600 (chmod 600 {path})."
        )
    if info.st_size > MAX_TOKEN_LENGTH + 2:
        raise TokenFileError(
            f"token file {path} holds {info.st_size} bytes; expected one token of at most "
            f"{MAX_TOKEN_LENGTH} characters"
        )
    raw = path.read_bytes()
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise TokenFileError(
            f"token file {path} is not ASCII; expected one token of printable ASCII "
            "characters (an HTTP header carries it)"
        ) from None
    if not token:
        raise TokenFileError(
            f"token file {path} is empty; expected one token (e.g. from python -c 'import "
            "secrets; print(secrets.token_urlsafe(32))')"
        )
    if any(not 0x21 <= ord(c) <= 0x7E for c in token):
        raise TokenFileError(
            f"token file {path}: the token holds spaces, line breaks or control characters; "
            "expected one token of printable ASCII characters on one line"
        )
    return token


def default_token_path() -> Path:
    """Where a generated token goes: ``$XDG_CONFIG_HOME/rl_platform/serve-token``.

    ``$XDG_CONFIG_HOME`` defaults to ``~/.config``.
    """
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "rl_platform" / TOKEN_FILE_NAME


def ensure_token_file(path: str | Path | None = None) -> tuple[Path, bool]:
    """A usable token file at ``path`` (default :func:`default_token_path`), made if absent.

    A new file gets a random 256-bit token (``secrets.token_urlsafe``) and mode 0600 in a
    0700 folder; an existing one is checked (:func:`read_token`) and reused, so clients
    keep working across restarts (delete it to rotate the token). Returns the path and
    whether it was created now.

    Raises:
        TokenFileError: an existing file that fails :func:`read_token`, or one that
            cannot be created.
    """
    path = Path(path).expanduser() if path is not None else default_token_path()
    if path.exists():
        read_token(path)
        return path, False
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another server made it a moment ago
        read_token(path)
        return path, False
    except OSError as err:
        raise TokenFileError(f"cannot create token file {path}: {err.strerror or err}") from None
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    return path, True


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is reachable from this machine only.

    A name counts when every address it resolves to is a loopback address; ``0.0.0.0``,
    ``::`` and names that do not resolve count as not loopback.
    """
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses
    )


# --------------------------------------------------------------------------- middlewares


async def send_error(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A JSON error response ``{"message", "detail"}``, as the server's other errors."""
    body = json.dumps({"message": message, "detail": message}).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": start + (headers or [])}
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


class BearerAuth:
    """ASGI middleware: 401 unless ``Authorization: Bearer <token>`` carries the token.

    The expected token is ``token``, else the served app's ``state.bearer_token`` (set
    by the replica from its config); when neither is set, every request passes. Checked
    before anything else (the body is not read), with :func:`hmac.compare_digest`.
    """

    def __init__(self, app: ASGIApp, token: str | None = None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request with 401 or hand it on."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        expected = self.token
        if expected is None and "app" in scope:
            expected = getattr(getattr(scope["app"], "state", None), "bearer_token", None)
        if expected is None:
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"authorization")
        if given is None:
            await self._refuse(scope, send, "missing", "this server requires a bearer token")
            return
        scheme, _, credentials = given.partition(b" ")
        if scheme.lower() != b"bearer" or not credentials.strip():
            await self._refuse(
                scope, send, "invalid_request", "the Authorization header must be 'Bearer <token>'"
            )
            return
        if not hmac.compare_digest(credentials.strip(), expected.encode("ascii")):
            await self._refuse(scope, send, "invalid_token", "the bearer token is not valid")
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, error: str, what: str) -> None:
        challenge = b'Bearer realm="rl_platform"'
        if error != "missing":  # RFC 6750 section 3: no error code when none was sent
            challenge += b', error="' + error.encode() + b'"'
        if scope["type"] != "http":  # a websocket handshake: close it
            await send({"type": "websocket.close", "code": 1008})
            return
        message = (
            f"unauthorized: {what}. Send the header 'Authorization: Bearer <token>' with the "
            "token from the server's token file (rlp serve --token-file)."
        )
        await send_error(send, 401, message, [(b"www-authenticate", challenge)])


class BodyDeadline:
    """ASGI middleware: the whole request body is read here, in time, before going on.

    A body that has not fully arrived ``timeout_s`` after the request started gets 408;
    one over ``max_bytes`` (declared or streamed) 413; while ``max_readers`` bodies are
    being read, another request with a body gets 503 with ``Retry-After``. The app
    behind receives the body at once (one message), then the client's disconnect.
    """

    def __init__(
        self,
        app: ASGIApp,
        timeout_s: float = BODY_TIMEOUT_S,
        max_bytes: int = MAX_BODY_BYTES,
        max_readers: int = MAX_BODY_READERS,
    ) -> None:
        self.app = app
        self.timeout_s = float(timeout_s)
        self.max_bytes = int(max_bytes)
        self.max_readers = int(max_readers)
        self.readers = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body within the deadline, then hand the request on."""
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await send_error(send, 413, self._too_large(f"{int(length)} bytes"))
            return
        if self.readers >= self.max_readers:
            await send_error(
                send,
                503,
                f"server busy: {self.readers} request bodies are being received; retry later",
                [(b"retry-after", str(RETRY_AFTER_S).encode())],
            )
            return
        self.readers += 1
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout_s)
        except TimeoutError:
            message = (
                f"request body not received within {self.timeout_s:g} s; send the whole body "
                "at once (the server does not wait for slow bodies)"
            )
            await send_error(send, 408, message, [(b"connection", b"close")])
            return
        except _BodyTooLarge as err:
            await send_error(send, 413, self._too_large(f"over {err.args[0]} bytes received"))
            return
        except _Disconnected:
            return
        finally:
            self.readers -= 1
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _BodyTooLarge(self.max_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, what: str) -> str:
        return f"request body too large: {what}, the limit is {self.max_bytes} bytes"


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    if length is not None:
        return length.strip() != b"0"
    return _header(scope, b"transfer-encoding") is not None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` in one message, then the client's next messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# --------------------------------------------------------------------------- Serve's hook


def ingress_env(body_timeout_s: float = BODY_TIMEOUT_S, token_file: str | None = None) -> dict:
    """Environment that makes Serve's HTTP servers (proxy, direct ingress) run the guards.

    Serve's processes read it when Ray starts them, so it applies to a Ray started with
    it (``rlp serve`` starts its own so); on a cluster, export the same variables before
    ``ray start``. ``token_file``: Serve's own paths (``/-/healthz``, ``/-/routes``) want
    the token too.
    """
    env = {SERVE_CALLBACK_ENV: INGRESS_CALLBACK, BODY_TIMEOUT_ENV: repr(float(body_timeout_s))}
    if token_file is not None:
        env[TOKEN_FILE_ENV] = str(Path(token_file).expanduser().resolve())
    return env


def ingress_middlewares() -> list:
    """Serve's HTTP callback: the guards in front of its proxy and direct-ingress servers.

    Read from the environment (:func:`ingress_env`): the body deadline and, if given, the
    token file. Outermost first: :class:`BearerAuth` (when a token file is set), then
    :class:`BodyDeadline`.
    """
    from starlette.middleware import Middleware

    timeout_s = float(os.environ.get(BODY_TIMEOUT_ENV, BODY_TIMEOUT_S))
    token_file = os.environ.get(TOKEN_FILE_ENV)
    # Serve wraps the app with each in turn: the last one listed is the outermost.
    middlewares = [Middleware(BodyDeadline, timeout_s=timeout_s)]
    if token_file:
        middlewares.append(Middleware(BearerAuth, token=read_token(token_file)))
    return middlewares
