"""The policy server's guards without Ray: bearer tokens, token files, body deadlines."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from rl_platform.serving import guard


class Recorder:
    """An ASGI ``send`` that keeps the response: status, headers, JSON body."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body = b""

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.lower(): v for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def json(self) -> dict:
        return json.loads(self.body)


async def echo_app(scope, receive, send) -> None:
    """200 with the body it received (all of it)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def scope(headers: dict[str, str] | None = None, method: str = "POST") -> dict:
    return {
        "type": "http",
        "method": method,
        "path": "/v1/act",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }


def chunks(*parts: bytes, stall: bool = False):
    """A ``receive`` giving ``parts`` (the last one ends the body unless ``stall``)."""
    queue = list(parts)

    async def receive() -> dict:
        if queue:
            part = queue.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(queue) or stall}
        await asyncio.sleep(3600)  # a client that never sends the rest
        return {"type": "http.disconnect"}

    return receive


def call(app, scope_: dict, receive) -> Recorder:
    sent = Recorder()
    asyncio.run(app(scope_, receive, sent))
    return sent


# --------------------------------------------------------------------------- tokens


def write_token(path, text: str = "s3cret-token_value", mode: int = 0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_read_token_takes_an_owner_only_file(tmp_path):
    assert guard.read_token(write_token(tmp_path / "t", "abc-DEF_123\n")) == "abc-DEF_123"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(
    ("text", "mode", "match"),
    [
        ("Zq9-hush", 0o644, "mode 0644: group or others"),
        ("Zq9-hush", 0o640, "mode 0640"),
        ("Zq9-hush", 0o602, "chmod 600"),
        ("", 0o600, "is empty"),
        ("  \n", 0o600, "is empty"),
        ("Zq9 hush", 0o600, "spaces"),
        ("Zq9\nhush", 0o600, "line breaks"),
        ("caf\u00e9", 0o600, "not ASCII"),
    ],
    ids=["world_readable", "group_readable", "world_writable", "empty", "blank", "space",
         "two_lines", "not_ascii"],
)  # fmt: skip
def test_read_token_refuses_files_that_cannot_protect_a_server(tmp_path, text, mode, match):
    path = write_token(tmp_path / "token", text, mode)
    with pytest.raises(guard.TokenFileError, match=match) as caught:
        guard.read_token(path)
    assert str(path) in str(caught.value)
    assert "hush" not in str(caught.value)  # never the token


def test_read_token_refuses_a_missing_file_or_a_folder(tmp_path):
    with pytest.raises(guard.TokenFileError, match="No such file"):
        guard.read_token(tmp_path / "missing")
    with pytest.raises(guard.TokenFileError, match="not a regular file"):
        guard.read_token(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_ensure_token_file_generates_once_for_the_user_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    path, created = guard.ensure_token_file()
    assert created and path == tmp_path / "config" / "rl_platform" / "serve-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token = guard.read_token(path)
    assert len(token) >= 40  # 256 random bits, base64url
    again, created_again = guard.ensure_token_file()
    assert (again, created_again) == (path, False) and guard.read_token(again) == token
    path.chmod(0o644)
    with pytest.raises(guard.TokenFileError, match="0644"):
        guard.ensure_token_file()  # an existing, unsafe file is not reused


def test_loopback_hosts():
    assert all(map(guard.is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]))
    assert not any(map(guard.is_loopback, ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1"]))
    assert not guard.is_loopback("no-such-host.invalid")


# --------------------------------------------------------------------------- bearer auth

TOKEN = "the-token_0123456789"


@pytest.mark.parametrize(
    ("header", "error"),
    [(None, None), ("Bearer wrong", "invalid_token"), ("Basic dXNlcjpwYXNz", "invalid_request"),
     ("Bearer", "invalid_request"), (f"Bearer {TOKEN}x", "invalid_token"),
     (f"bearer {TOKEN[:-1]}", "invalid_token")],
    ids=["missing", "wrong", "basic", "no_token", "longer", "shorter"],
)  # fmt: skip
def test_bearer_auth_refuses_with_401_and_a_challenge(header, error):
    reached = []

    async def app(scope_, receive, send) -> None:
        reached.append(True)

    sent = call(
        guard.BearerAuth(app, token=TOKEN),
        scope({"Authorization": header} if header else {}),
        chunks(b"{}"),
    )
    assert sent.status == 401 and not reached
    challenge = sent.headers[b"www-authenticate"].decode()
    assert challenge.startswith("Bearer ")
    assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)
    assert "Bearer <token>" in sent.json()["message"] and TOKEN not in sent.body.decode()


def test_bearer_auth_passes_the_right_token_in_any_case_of_the_scheme():
    for scheme in ("Bearer", "bearer", "BEARER"):
        sent = call(
            guard.BearerAuth(echo_app, token=TOKEN),
            scope({"Authorization": f"{scheme} {TOKEN}"}),
            chunks(b"body"),
        )
        assert (sent.status, sent.body) == (200, b"body")


def test_bearer_auth_reads_the_served_apps_token_and_is_off_without_one():
    class State:
        bearer_token = None

    class App:
        state = State()

    auth = guard.BearerAuth(echo_app)
    assert call(auth, {**scope(), "app": App()}, chunks(b"x")).status == 200
    State.bearer_token = TOKEN
    assert call(auth, {**scope(), "app": App()}, chunks(b"x")).status == 401
    good = {**scope({"Authorization": f"Bearer {TOKEN}"}), "app": App()}
    assert call(auth, good, chunks(b"x")).status == 200


# --------------------------------------------------------------------------- body deadline


def test_body_deadline_hands_on_the_whole_body_at_once():
    seen = []

    async def app(scope_, receive, send) -> None:
        seen.append(await receive())
        await echo_app(scope_, chunks(seen[0]["body"]), send)

    deadline = guard.BodyDeadline(app, timeout_s=1.0)
    sent = call(deadline, scope({"Transfer-Encoding": "chunked"}), chunks(b'{"a"', b": 1", b"}"))
    assert sent.status == 200 and sent.body == b'{"a": 1}'
    assert seen == [{"type": "http.request", "body": b'{"a": 1}', "more_body": False}]
    assert deadline.readers == 0


def test_a_stalled_body_gets_408_after_the_deadline():
    deadline = guard.BodyDeadline(echo_app, timeout_s=0.2)
    start = time.monotonic()
    sent = call(deadline, scope({"Content-Length": "1000"}), chunks(b'{"obs', stall=True))
    assert sent.status == 408 and "0.2 s" in sent.json()["message"]
    assert time.monotonic() - start < 30 and deadline.readers == 0


def test_body_deadline_refuses_large_bodies_declared_or_streamed():
    deadline = guard.BodyDeadline(echo_app, timeout_s=1.0, max_bytes=10)
    declared = call(deadline, scope({"Content-Length": "11"}), chunks(b"x" * 11))
    assert declared.status == 413 and "11 bytes" in declared.json()["message"]
    streamed = call(deadline, scope({"Transfer-Encoding": "chunked"}), chunks(b"x" * 6, b"y" * 6))
    assert streamed.status == 413 and "limit is 10 bytes" in streamed.json()["message"]


def test_too_many_bodies_at_once_get_503_with_retry_after():
    deadline = guard.BodyDeadline(echo_app, timeout_s=5.0, max_readers=2)

    async def scenario() -> list[Recorder]:
        stalled = [Recorder() for _ in range(2)]
        tasks = [
            asyncio.create_task(
                deadline(scope({"Content-Length": "9"}), chunks(b"x", stall=True), r)
            )
            for r in stalled
        ]
        await asyncio.sleep(0.05)
        extra = Recorder()
        await deadline(scope({"Content-Length": "1"}), chunks(b"x"), extra)
        without_body = Recorder()
        await deadline(scope(method="GET"), chunks(b""), without_body)
        for task in tasks:
            task.cancel()
        return [extra, without_body]

    extra, without_body = asyncio.run(scenario())
    assert extra.status == 503 and extra.headers[b"retry-after"] == b"1"
    assert without_body.status == 200  # a GET without a body is never held up


def test_ingress_middlewares_follow_the_environment(tmp_path, monkeypatch):
    path = write_token(tmp_path / "t", TOKEN)
    monkeypatch.delenv(guard.TOKEN_FILE_ENV, raising=False)
    env = guard.ingress_env(body_timeout_s=2.5)
    assert env[guard.SERVE_CALLBACK_ENV] == "rl_platform.serving.guard:ingress_middlewares"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (only,) = guard.ingress_middlewares()
    assert only.cls is guard.BodyDeadline and only.kwargs == {"timeout_s": 2.5}
    monkeypatch.setenv(
        guard.TOKEN_FILE_ENV, guard.ingress_env(token_file=path)[guard.TOKEN_FILE_ENV]
    )
    body, auth = guard.ingress_middlewares()
    assert auth.cls is guard.BearerAuth and auth.kwargs == {"token": TOKEN}  # outermost last


# --------------------------------------------------------------------------- rlp serve


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(("text", "mode", "match"), [("tok", 0o644, "0644"), ("", 0o600, "empty")])
def test_rlp_serve_refuses_a_bad_token_file_with_exit_2(tmp_path, text, mode, match):
    path = write_token(tmp_path / "token", text, mode)
    result = subprocess.run(
        [sys.executable, "-m", "rl_platform", "serve", str(tmp_path / "run"), "--token-file",
         str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--token-file" in result.stderr and match in result.stderr
    assert "Traceback" not in result.stderr
