"""The policy server: actions, batching, bad requests, the shield, A/B tests, feedback,
and under attack: bearer tokens, a full server, stalled request bodies, junk rewards.

Checkpoints are fresh PPO modules with their weights-only export (as the evaluation
suite's tests make them). The HTTP tests share one local Ray and one Serve per module
(Serve's proxy in front); each server configuration is deployed once (``Server.use``), in
test order. Direct ingress (the replica on the port) is what `rlp serve` starts in its
own Ray: one such server serves the ``TestRlpServeDirect`` tests.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import requests
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from rl_platform.checkpoints import export_policies
from rl_platform.config import SafetySpec, load_experiment
from rl_platform.envs.base import BatchedCore
from rl_platform.evaluation.baselines import random_actions
from rl_platform.evaluation.policy import TrainedPolicy
from rl_platform.evaluation.rollout import make_core
from rl_platform.serving import guard
from rl_platform.serving.ports import free_port

AGENTS = 3
TRADING = {
    "name": "serve_test",
    "env": {"id": "trading", "config": {"num_agents": AGENTS, "episode_length": 50}},
    "algorithm": {"id": "ppo", "shared_policy": True},
}
SAFETY = {
    "constraints": [{"name": "max_position", "limit": 0.05}, {"name": "max_order", "limit": 1.5}],
    "fallback": "momentum",
}
TIMEOUT = 30
BODY_TIMEOUT_S = 2.0  # the servers' body deadline here: stalled bodies get 408 after it
# A server whose slots are easy to fill: requests wait BATCH_WAIT_S in a batch that never
# fills, two at a time, two more queued; anything more must be refused at once.
SMALL = {"max_ongoing_requests": 2, "max_queued_requests": 2, "max_batch_size": 8}
BATCH_WAIT_S = 4.0


def make_run(root: Path, experiment: dict, seed: int) -> Path:
    """A run directory with one checkpoint of an untrained PPO module and its export."""
    import torch
    from ray.rllib.algorithms.ppo.ppo_catalog import PPOCatalog
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
        DefaultPPOTorchRLModule,
    )
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rl_platform import registry

    resolved = load_experiment(experiment)
    env = registry.get_env(resolved.env.id).load()(dict(resolved.env.config))
    torch.manual_seed(seed)
    module = RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        observation_space=env.observation_spaces["agent_0"],
        action_space=env.action_spaces["agent_0"],
        model_config={"fcnet_hiddens": [32, 32], "vf_share_layers": False},
        catalog_class=PPOCatalog,
    ).build()
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(resolved.to_yaml())
    checkpoint = root / "trial" / "checkpoint_000000"
    module.save_to_path(str(checkpoint / "learner_group" / "learner" / "rl_module" / "shared"))
    export_policies(checkpoint, resolved.model_dump(mode="json"))
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serving")
    return {
        "champion": make_run(root / "champion", TRADING, seed=0),
        "challenger": make_run(root / "challenger", TRADING, seed=1),
        "shielded": make_run(root / "shielded", {**TRADING, "safety": SAFETY}, seed=2),
        "rendezvous": make_run(
            root / "rendezvous", {**TRADING, "env": {"id": "rendezvous", "config": {}}}, seed=3
        ),
        "discrete": make_run(
            root / "discrete",
            {
                **TRADING,
                "env": {"id": "trading", "config": {"num_agents": AGENTS, "discrete": True}},
            },
            seed=5,
        ),
        "five_traders": make_run(
            root / "five", {**TRADING, "env": {"id": "trading", "config": {}}}, seed=4
        ),
    }


def observations(n: int, seed: int = 0, agents: int = AGENTS) -> np.ndarray:
    """(n, agents, obs_dim) observations of random play in the trading env."""
    core = make_core("trading", {"num_agents": agents}, "easy", n)
    rng = np.random.default_rng(seed)
    core.reset(rng)
    for _ in range(3):
        core.step(random_actions(core.action_space, (n, agents), rng), rng)
    return core.observe()


def greedy(run: Path, obs: np.ndarray) -> np.ndarray:
    """What the server should answer: the exported policy's actions, clipped to the Box."""
    policy = TrainedPolicy(run / "trial" / "checkpoint_000000")
    return np.clip(policy.actions(obs), -1.0, 1.0)


def body(obs: np.ndarray, session: str | None = None, agents=None) -> dict:
    agents = range(obs.shape[0]) if agents is None else agents
    out = {"observations": {f"agent_{i}": obs[i].tolist() for i in agents}}
    if session is not None:
        out["session_id"] = session
    return out


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def make_token_file(path: Path) -> str:
    path.write_text("tok-" + os.urandom(16).hex() + "\n")
    path.chmod(0o600)
    return guard.read_token(path)


def check_token_required(url: str, token: str) -> None:
    """Every endpoint: no token -> 401 with a Bearer challenge, a wrong one -> 401, the
    right one -> what the endpoint answers."""
    act = body(observations(1)[0])
    calls = [
        ("get", "/healthz", None, 200),
        ("get", "/v1/info", None, 200),
        ("get", "/openapi.json", None, 200),
        ("get", "/docs", None, 200),
        ("post", "/v1/act", act, 200),
        ("post", "/v1/feedback", {"session_id": "s", "reward": 1.0}, 404),  # no store
        ("get", "/v1/ab", None, 404),
        ("get", "/v1/nothing", None, 404),
    ]
    for method, path, payload, status in calls:
        for given in (None, "wrong", token[:-1], token + "x"):
            reply = requests.request(
                method, url + path, json=payload, headers=auth(given), timeout=TIMEOUT
            )
            assert reply.status_code == 401, (path, given, reply.text[:300])
            assert reply.headers["www-authenticate"].startswith("Bearer")
            assert token not in reply.text
        reply = requests.request(
            method, url + path, json=payload, headers=auth(token), timeout=TIMEOUT
        )
        assert reply.status_code == status, (path, reply.text[:300])


def timed_post(url: str, payload: dict, headers: dict) -> tuple[int, float, str | None]:
    start = time.monotonic()
    reply = requests.post(url + "/v1/act", json=payload, headers=headers, timeout=TIMEOUT + 20)
    return reply.status_code, time.monotonic() - start, reply.headers.get("retry-after")


def check_full_server_sheds_load(url: str, headers: dict) -> None:
    """With SMALL limits: 2 requests held in a batch, 2 queued, 10 more -> 503 at once."""
    payload = body(observations(1, seed=11)[0])
    with ThreadPoolExecutor(14) as pool:
        held = [pool.submit(timed_post, url, payload, headers) for _ in range(4)]
        # They reach the replica, which holds them BATCH_WAIT_S (4 s) from the first one's
        # arrival; 2.5 s lets them in and leaves the 10 more ample time before slots free.
        time.sleep(2.5)
        extra = [pool.submit(timed_post, url, payload, headers) for _ in range(10)]
        replies = [f.result() for f in held + extra]
    # Which four got the slots is up to the machine (on a loaded one a first request can
    # reach the server after a later one): four are served, the other ten refused at once.
    served = [reply for reply in replies if reply[0] == 200]
    refused = [reply for reply in replies if reply[0] != 200]
    assert len(served) == 4, replies
    for status, seconds, retry_after in refused:
        assert status == 503 and seconds < 1.0 and retry_after == "1", replies


def stall(port: int, n: int, token: str | None = None) -> list[socket.socket]:
    """``n`` connections that send a request's headers and part of its body, then stop."""
    head = (
        "POST /v1/act HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in auth(token).items())
        + "Content-Length: 4000\r\n\r\n"
        + '{"observations": {"agent_0": [0.0, '
    )
    socks = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        sock.sendall(head.encode())
        socks.append(sock)
    return socks


def check_stalled_bodies_do_not_starve(url: str, port: int, token: str | None = None) -> None:
    """128 bodies that never finish: /healthz and /v1/act still answer, the stalled get 408."""
    socks = stall(port, 128, token)
    try:
        time.sleep(0.5)
        for _ in range(3):
            reply = requests.get(url + "/healthz", headers=auth(token), timeout=10)
            assert reply.status_code == 200, reply.text
        act = requests.post(
            url + "/v1/act", json=body(observations(1)[0]), headers=auth(token), timeout=TIMEOUT
        )
        assert act.status_code == 200, act.text
        socks[0].settimeout(BODY_TIMEOUT_S + 20)
        assert socks[0].recv(4096).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in socks:
            sock.close()
    assert requests.get(url + "/healthz", headers=auth(token), timeout=10).status_code == 200


# --------------------------------------------------------------------------- without Ray


def test_observed_violations_flag_whatever_the_env_flags():
    """From observations alone, every state-based violation is caught (trading: more)."""
    cases = {
        "trading": {"max_position": 0.5, "max_order": 0.3},
        "supply_chain": {"max_order": 2.0, "min_safety_stock": 3.0},
        "resource_allocation": {"max_share": 0.4},
        "rendezvous": {"max_speed": 0.8},
    }
    for env_id, constraints in cases.items():
        for discrete in (False, True):
            core = make_core(env_id, {"discrete": discrete}, "expert", 8)
            judge = make_core(env_id, {"discrete": discrete}, "expert", 1)  # no shared state
            rng = np.random.default_rng(0)
            core.reset(rng)
            for _ in range(60):
                obs = core.observe()
                actions = random_actions(core.action_space, (8, core.num_agents), rng)
                for name, limit in constraints.items():
                    truth = core.constraint_violations(name, limit, actions)
                    seen = judge.observed_violations(name, limit, obs, actions)
                    assert seen.shape == truth.shape
                    assert not (truth & ~seen).any(), (env_id, discrete, name)
                    if env_id != "trading":
                        np.testing.assert_array_equal(seen, truth, err_msg=f"{env_id} {name}")
                result = core.step(actions, rng)
                done = result.terminated | result.truncated
                if done.any():
                    core.reset(rng, mask=done)


def test_observed_violations_default_refuses_by_name():
    core = make_core("coverage", {}, "easy", 1)
    with pytest.raises(ValueError, match="no constraint 'speed'"):
        core.observed_violations("speed", 1.0, core.observe(), core.default_actions(core.observe()))


def test_shield_refuses_constraints_not_judged_from_observations():
    from rl_platform.envs.rendezvous import RendezvousConfig, RendezvousCore
    from rl_platform.serving.arms import ServingError
    from rl_platform.serving.service import observation_shield

    class BlindCore(RendezvousCore):
        def observed_violations(self, name, limit, obs, actions):
            return BatchedCore.observed_violations(self, name, limit, obs, actions)

    spec = SafetySpec.model_validate({"constraints": [{"name": "max_speed", "limit": 0.5}]})
    with pytest.raises(ServingError, match="cannot judge constraint 'max_speed'"):
        observation_shield(BlindCore(RendezvousConfig(), 1), spec)
    observation_shield(RendezvousCore(RendezvousConfig(), 1), spec)  # the real core can


def test_plan_refuses_what_cannot_be_served(runs, tmp_path):
    from rl_platform.serving.app import ServingError, plan

    with pytest.raises(ServingError, match="no such checkpoint"):
        plan(tmp_path / "nothing")
    with pytest.raises(ServingError, match="safety section"):
        plan(runs["champion"], shield=True)
    with pytest.raises(ServingError, match="one env"):
        plan(runs["champion"], challenger=runs["rendezvous"])
    with pytest.raises(ServingError, match="same agents"):
        plan(runs["champion"], challenger=runs["five_traders"])
    with pytest.raises(ServingError, match="split"):
        plan(runs["champion"], challenger=runs["challenger"], split=1.5)
    config = plan(runs["champion"], challenger=runs["challenger"], store=tmp_path / "s.sqlite")
    assert config.champion.id != config.challenger.id
    assert config.champion.id.startswith("checkpoint_000000-")
    assert Path(config.store).is_file()


def test_serve_refuses_a_port_in_use_before_starting_ray(runs, monkeypatch):
    import ray

    from rl_platform.serving.app import ServingError, serve

    if ray.is_initialized():
        pytest.skip("needs a process without Ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServingError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(runs["champion"], port=port, blocking=False)
    assert not ray.is_initialized()


def test_the_replica_times_out_a_stalled_body_where_no_guard_reads_it():
    """A cluster whose Ray was started without the guards: the app's own deadline."""
    import asyncio

    from fastapi import FastAPI

    from rl_platform.serving.asgi import RequestLimits, on_http_error

    inner = FastAPI()
    inner.add_middleware(RequestLimits)
    inner.add_exception_handler(StarletteHTTPException, on_http_error)
    inner.state.body_timeout_s = 0.3

    @inner.post("/v1/act")
    async def act(request: Request) -> dict:
        return await request.json()

    async def stalled() -> dict:
        if not sent:
            sent.append(True)
            return {"type": "http.request", "body": b'{"observations": ', "more_body": True}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    replies: list[dict] = []

    async def send(message: dict) -> None:
        replies.append(message)

    sent: list[bool] = []
    scope = {
        "type": "http", "method": "POST", "path": "/v1/act", "raw_path": b"/v1/act",
        "root_path": "", "query_string": b"", "http_version": "1.1", "scheme": "http",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"4000")],
    }  # fmt: skip
    asyncio.run(asyncio.wait_for(inner(scope, stalled, send), 30))
    assert replies[0]["status"] == 408
    assert "not received within 0.3 s" in json.loads(replies[1]["body"])["message"]


def test_feedback_rewards_follow_the_envs_declared_range():
    from rl_platform import registry
    from rl_platform.envs.rendezvous import RendezvousEnv
    from rl_platform.serving.arms import DEFAULT_REWARD_BOUND, env_reward_range

    assert env_reward_range("trading") == (-DEFAULT_REWARD_BOUND, DEFAULT_REWARD_BOUND)

    class Declared(RendezvousEnv):
        reward_range = (-2.0, float("inf"))

    registry.register_env(registry.EnvEntry("declared_rendezvous", "test only", Declared))
    try:
        assert env_reward_range("declared_rendezvous") == (-2.0, DEFAULT_REWARD_BOUND)
    finally:
        registry.ENVS.pop("declared_rendezvous")


def test_service_batches_many_requests_like_the_policy(runs):
    from rl_platform.serving.ab_test import CHAMPION
    from rl_platform.serving.app import plan
    from rl_platform.serving.service import PolicyService

    service = PolicyService(plan(runs["champion"]))
    obs = observations(16)
    present = np.ones((16, AGENTS), dtype=bool)
    decisions = service.act([(CHAMPION, obs[b], present[b]) for b in range(16)])
    expected = np.clip(
        TrainedPolicy(runs["champion"] / "trial" / "checkpoint_000000").actions(obs), -1, 1
    )
    np.testing.assert_allclose(np.stack([d.actions for d in decisions]), expected, atol=1e-6)
    assert service.largest_batch == 16


def test_discrete_actions_are_served_as_action_indices(runs):
    from rl_platform.serving.ab_test import CHAMPION
    from rl_platform.serving.app import plan
    from rl_platform.serving.service import PolicyService

    service = PolicyService(plan(runs["discrete"]))
    assert service.info()["action_space"]["kind"] == "discrete"
    obs = observations(4)
    present = np.array([True, False, True])
    decisions = service.act([(CHAMPION, obs[b], present) for b in range(4)])
    padded = np.where(present[None, :, None], obs, 0.0).astype(np.float32)
    expected = TrainedPolicy(runs["discrete"] / "trial" / "checkpoint_000000").actions(padded)
    for b, decision in enumerate(decisions):
        actions = service.actions_json(decision, present)
        assert list(actions) == ["agent_0", "agent_2"]
        assert all(type(a) is int and 0 <= a < 5 for a in actions.values())
        assert [actions["agent_0"], actions["agent_2"]] == expected[b, [0, 2]].tolist()


# --------------------------------------------------------------------------- HTTP


class DirectServer:
    """`rlp serve` in a subprocess (its own Ray, direct ingress) with a token and SMALL limits."""

    def __init__(self, runs: dict[str, Path], token_file: Path) -> None:
        self.token = make_token_file(token_file)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = {f"--{k.replace('_', '-')}": str(v) for k, v in SMALL.items()}
        command = [
            sys.executable, "-m", "rl_platform", "serve", str(runs["champion"]),
            "--port", str(self.port), "--token-file", str(token_file),
            "--batch-wait-ms", str(BATCH_WAIT_S * 1000), "--body-timeout", str(BODY_TIMEOUT_S),
            *[item for pair in options.items() for item in pair],
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 180
        while True:
            try:
                reply = requests.get(self.url + "/healthz", headers=auth(self.token), timeout=2)
                if reply.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert self.proc.poll() is None, self.proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "rlp serve did not answer in time"
            time.sleep(0.5)
        # The replica answers before `rlp serve` reports it is ready.
        while not self.lines or "Ctrl-C stops" not in self.lines[-1]:
            self.lines.append(self.proc.stdout.readline())
            assert self.lines[-1], "".join(self.lines)[-3000:]

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        output, _ = self.proc.communicate(timeout=120)
        return output


@pytest.mark.slow
class TestRlpServeDirect:
    """`rlp serve` with one replica in its own Ray: the replica listens on --port itself
    (direct ingress, no proxy hop), behind the guards and a bearer token."""

    @pytest.fixture(scope="class")
    def direct(self, runs, tmp_path_factory):
        server = DirectServer(runs, tmp_path_factory.mktemp("direct") / "token")
        try:
            server.wait_ready()
            yield server
        finally:
            output = server.stop()
        assert server.proc.returncode == 0, output[-3000:]
        assert "(direct ingress)" in "".join(server.lines)
        assert server.token not in "".join(server.lines) + output  # never printed or logged

    def test_answers_from_the_replica_on_its_port(self, direct, runs):
        assert "bearer token required" in "".join(direct.lines)
        obs = observations(2, seed=5)
        headers = auth(direct.token)
        with ThreadPoolExecutor(2) as pool:
            replies = list(
                pool.map(
                    lambda b: requests.post(
                        direct.url + "/v1/act", json=body(obs[b]), headers=headers, timeout=TIMEOUT
                    ),
                    range(2),
                )
            )
        assert [r.status_code for r in replies] == [200, 200]
        served = np.array(
            [[r.json()["actions"][f"agent_{i}"] for i in range(AGENTS)] for r in replies]
        )
        np.testing.assert_allclose(served, greedy(runs["champion"], obs), atol=1e-5)
        bad = requests.post(
            direct.url + "/v1/act",
            json={"observations": {"nobody": [0.0]}},
            headers=headers,
            timeout=TIMEOUT,
        )
        assert 400 <= bad.status_code < 500 and "nobody" in bad.text
        info = requests.get(direct.url + "/v1/info", headers=headers, timeout=TIMEOUT).json()
        assert info["env"]["id"] == "trading"

    def test_every_endpoint_wants_the_token(self, direct):
        check_token_required(direct.url, direct.token)
        for path in ("/-/healthz", "/-/routes"):  # Serve's own, answered before the app
            assert requests.get(direct.url + path, timeout=TIMEOUT).status_code == 401
            reply = requests.get(direct.url + path, headers=auth(direct.token), timeout=TIMEOUT)
            assert reply.status_code == 200

    def test_a_full_server_answers_503_with_retry_after(self, direct):
        check_full_server_sheds_load(direct.url, auth(direct.token))

    def test_stalled_bodies_do_not_starve_the_server(self, direct):
        check_stalled_bodies_do_not_starve(direct.url, direct.port, direct.token)
        # Unauthenticated ones are refused before their body is waited for.
        socks = stall(direct.port, 8)
        try:
            socks[0].settimeout(10)
            assert socks[0].recv(4096).startswith(b"HTTP/1.1 401 ")
        finally:
            for sock in socks:
                sock.close()


class Server:
    """One Ray + Serve for the module; ``use`` deploys a configuration once.

    Its Ray starts with the guards' environment (as `rlp serve` starts its own), so
    Serve's proxy reads request bodies within BODY_TIMEOUT_S before they take a slot.
    """

    def __init__(self, runs: dict[str, Path], store: Path, token_file: Path) -> None:
        self.runs = runs
        self.store = store
        self.token = make_token_file(token_file)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.current: str | None = None
        self.session = requests.Session()
        self.configs = {
            "plain": dict(checkpoint=runs["champion"]),
            "ab": dict(
                checkpoint=runs["champion"], challenger=runs["challenger"], split=0.1, store=store
            ),
            "shielded": dict(checkpoint=runs["shielded"], shield=True),
            "two_unbatched": dict(
                checkpoint=runs["champion"], num_replicas=2, replica_cpus=0.5, batching=False
            ),
            "autoscaled": dict(
                checkpoint=runs["champion"],
                replica_cpus=0.5,
                autoscaling_config={"min_replicas": 1, "max_replicas": 2},
            ),
            "guarded": dict(
                checkpoint=runs["champion"],
                token_file=token_file,
                batch_wait_timeout_s=BATCH_WAIT_S,
                **SMALL,
            ),
            # Serve's proxy keeps the host it started with (127.0.0.1): this checks what
            # serve() does for a host beyond this machine, without listening there.
            "exposed": dict(checkpoint=runs["champion"], host="0.0.0.0"),
        }

    def use(self, name: str, restart: bool = False) -> Server:
        from rl_platform.serving import app

        if restart:
            app.shutdown()
            self.current = None
        if self.current != name:
            app.serve(port=self.port, blocking=False, access_log=False, **self.configs[name])
            self.current = name
        return self

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=TIMEOUT)

    def post(self, path: str, payload=None, **kwargs) -> requests.Response:
        if payload is not None:
            kwargs["json"] = payload
        return self.session.post(self.url + path, timeout=TIMEOUT, **kwargs)


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    import ray

    from rl_platform.serving import app

    with mock.patch.dict(os.environ, guard.ingress_env(body_timeout_s=BODY_TIMEOUT_S)):
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        folder = tmp_path_factory.mktemp("store")
        yield Server(runs, folder / "feedback.sqlite", folder / "token")
    finally:
        app.shutdown()
        ray.shutdown()


@pytest.mark.slow
def test_health_info_and_openapi(server):
    server.use("plain")
    assert server.get("/healthz").json() == {"status": "ok"}
    info = server.get("/v1/info").json()
    assert info["env"]["id"] == "trading"
    assert info["agents"] == [f"agent_{i}" for i in range(AGENTS)]
    assert info["observation_space"]["shape"] == [50]
    assert info["action_space"] == {
        "kind": "box",
        "shape": [3],
        "dtype": "float32",
        "low": [-1.0] * 3,
        "high": [1.0] * 3,
        "n": None,
    }
    assert info["checkpoint"]["id"].startswith("checkpoint_000000-")
    assert info["versions"]["rl_platform"] and info["checkpoint"]["versions"]["ray"]
    assert info["ab"]["enabled"] is False and info["shield"] == {"enabled": False}
    schema = server.get("/openapi.json").json()
    assert {"/v1/act", "/v1/feedback", "/v1/ab", "/v1/info", "/healthz"} <= set(schema["paths"])
    observations_schema = schema["components"]["schemas"]["ActRequest"]["properties"][
        "observations"
    ]
    assert observations_schema["maxProperties"] == AGENTS
    assert observations_schema["additionalProperties"]["minItems"] == 50
    assert "ActResponse" in schema["components"]["schemas"]
    assert server.get("/docs").status_code == 200


@pytest.mark.slow
def test_act_for_all_agents_and_a_subset(server, runs):
    server.use("plain")
    obs = observations(1)[0]
    policy = TrainedPolicy(runs["champion"] / "trial" / "checkpoint_000000")
    expected = np.clip(policy.actions(obs[None])[0], -1, 1)
    response = server.post("/v1/act", body(obs))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["arm"] == "champion" and result["interventions"] == []
    assert set(result["actions"]) == {f"agent_{i}" for i in range(AGENTS)}
    served = np.array([result["actions"][f"agent_{i}"] for i in range(AGENTS)])
    np.testing.assert_allclose(served, expected, atol=1e-6)
    assert len(result["request_id"]) == 32

    # A subset: the others are zeros in the batch and absent from the answer.
    padded = obs.copy()
    padded[[0, 2]] = 0.0
    subset = np.clip(policy.actions(padded[None])[0], -1, 1)
    result = server.post("/v1/act", body(obs, agents=[1])).json()
    assert list(result["actions"]) == ["agent_1"]
    np.testing.assert_allclose(result["actions"]["agent_1"], subset[1], atol=1e-6)


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_each_answered_right(server, runs):
    server.use("plain")
    obs = observations(96, seed=1)
    expected = np.clip(
        TrainedPolicy(runs["champion"] / "trial" / "checkpoint_000000").actions(obs), -1, 1
    )
    before = server.get("/v1/info").json()["batching"]

    def ask(b: int) -> np.ndarray:
        response = requests.post(server.url + "/v1/act", json=body(obs[b]), timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        actions = response.json()["actions"]
        return np.array([actions[f"agent_{i}"] for i in range(AGENTS)])

    with ThreadPoolExecutor(32) as pool:
        served = np.stack(list(pool.map(ask, range(96))))
    np.testing.assert_allclose(served, expected, atol=1e-5)
    after = server.get("/v1/info").json()["batching"]
    assert after["enabled"] and after["largest_batch"] > 1
    assert after["batches"] - before["batches"] < 96  # requests shared forward passes


@pytest.mark.slow
@pytest.mark.parametrize("config", ["two_unbatched", "autoscaled"])
def test_replicas_and_autoscaling_from_arguments(server, runs, config):
    from ray import serve

    server.use(config)
    status = serve.status().applications["rl_platform"].deployments["PolicyServer"]
    assert status.status == "HEALTHY"
    if config == "two_unbatched":
        assert status.replica_states == {"RUNNING": 2}
    obs = observations(8, seed=3)

    def ask(b: int) -> dict:
        return requests.post(server.url + "/v1/act", json=body(obs[b]), timeout=TIMEOUT).json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, range(8)))
    served = np.array([[r["actions"][f"agent_{i}"] for i in range(AGENTS)] for r in results])
    np.testing.assert_allclose(served, greedy(runs["champion"], obs), atol=1e-5)
    batching = server.get("/v1/info").json()["batching"]
    assert batching["enabled"] is (config == "autoscaled")


def bad_requests() -> list:
    """(id, kwargs for requests.post to /v1/act, expected status)."""
    good = body(observations(1)[0])
    obs = good["observations"]
    row = obs["agent_0"]
    json_header = {"content-type": "application/json"}

    def raw(text: str | bytes, status: int = 422, headers=json_header):
        return {"data": text, "headers": headers}, status

    def literal(first: str) -> str:  # agent_0's observation starting with a JSON token
        return '{"observations": {"agent_0": [' + first + ", 0" * (len(row) - 1) + "]}}"

    def with_obs(observations, status=422, **extra):
        return {"json": {"observations": observations, **extra}}, status

    cases = {
        "not_json": raw("{not json"),
        "invalid_utf8": raw(b'{"observations": "\xff\xfe"}', 400),
        "json_list": raw("[1, 2, 3]"),
        "json_string": raw('"observations"'),
        "empty_body": raw(""),
        "text_content_type": raw(json.dumps(good), 415, {"content-type": "text/plain"}),
        "no_content_type": raw(json.dumps(good).encode(), 415, {}),
        "form_content_type": raw(
            "observations=1", 415, {"content-type": "application/x-www-form-urlencoded"}
        ),
        "missing_observations": ({"json": {"session_id": "s"}}, 422),
        "empty_observations": with_obs({}),
        "extra_field": with_obs(obs, extra_field=1),
        "observations_a_list": with_obs([row]),
        "observation_a_number": with_obs({"agent_0": 0.5}),
        "strings_for_numbers": with_obs({"agent_0": [str(v) for v in row]}),
        "bools_for_numbers": with_obs({"agent_0": [True] * len(row)}),
        "null_value": with_obs({"agent_0": [None, *row[1:]]}),
        "nan": raw('{"observations": {"agent_0": [NaN' + ", 0.0" * (len(row) - 1) + "]}}"),
        "infinity": raw('{"observations": {"agent_0": [Infinity' + ", 0" * (len(row) - 1) + "]}}"),
        "overflow_to_inf": raw(
            '{"observations": {"agent_0": [1e999' + ", 0" * (len(row) - 1) + "]}}"
        ),
        "huge_integer": raw('{"observations": {"agent_0": [' + "9" * 5000 + "]}}", 400),
        "deep_nesting": raw("[" * 100_000 + "]" * 100_000, 400),
        "too_short": with_obs({"agent_0": row[:-1]}),
        "too_long": with_obs({"agent_0": [*row, 0.0]}),
        "empty_observation": with_obs({"agent_0": []}),
        "out_of_bounds": with_obs({"agent_0": [1e6, *row[1:]]}),
        "unknown_agent": with_obs({"agent_7": row}),
        "empty_agent_id": with_obs({"": row}),
        "too_many_agents": with_obs({f"agent_{i}": row for i in range(AGENTS + 1)}),
        "session_id_too_long": with_obs(obs, session_id="s" * 201),
        "session_id_empty": with_obs(obs, session_id=""),
        "session_id_a_number": with_obs(obs, session_id=42),
        "body_over_1mb": raw(json.dumps({"observations": {"agent_0": [0.0] * 300_000}}), 413),
        "streamed_body_over_1mb": (
            {
                "data": iter([b'{"observations": {"agent_0": [' + b"0.0, " * 250_000] * 2),
                "headers": json_header,
            },
            413,
        ),
    }
    return [pytest.param(kwargs, status, id=name) for name, (kwargs, status) in cases.items()]


@pytest.mark.slow
@pytest.mark.parametrize(("kwargs", "status"), bad_requests())
def test_bad_requests_get_a_4xx_with_a_message(server, kwargs, status):
    server.use("plain")
    response = requests.post(server.url + "/v1/act", timeout=TIMEOUT, **kwargs)
    assert response.status_code == status, response.text[:500]
    message = response.json()["message"]
    assert isinstance(message, str) and len(message) > 5


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "payload", "status"),
    [
        ("get", "/v1/act", None, 405),
        ("post", "/v1/nothing", {}, 404),
        ("post", "/v1/feedback", {"session_id": "s", "reward": 1.0}, 404),  # no store
        ("get", "/v1/ab", None, 404),
    ],
    ids=["wrong_method", "unknown_path", "feedback_without_store", "ab_without_store"],
)
def test_other_refusals_are_4xx_with_a_message(server, method, path, payload, status):
    server.use("plain")
    response = getattr(requests, method)(server.url + path, json=payload, timeout=TIMEOUT)
    assert response.status_code == status
    assert response.json()["message"]


@pytest.mark.slow
def test_stalled_bodies_do_not_starve_the_proxied_server(server):
    server.use("plain")
    check_stalled_bodies_do_not_starve(server.url, server.port)


@pytest.mark.slow
def test_shielded_actions_never_break_a_constraint(server, runs):
    server.use("shielded")
    info = server.get("/v1/info").json()["shield"]
    assert info["enabled"] and info["fallback"] == "momentum"
    assert [c["name"] for c in info["constraints"]] == ["max_position", "max_order"]
    judge = make_core("trading", {"num_agents": AGENTS}, "easy", 1)
    obs = observations(64, seed=2)
    interventions = 0
    for b in range(64):
        result = server.post("/v1/act", body(obs[b])).json()
        actions = np.array([result["actions"][f"agent_{i}"] for i in range(AGENTS)])
        for c in SAFETY["constraints"]:
            flags = judge.observed_violations(c["name"], c["limit"], obs[b][None], actions[None])
            assert not flags.any(), (b, c, actions)
        for entry in result["interventions"]:
            assert set(entry) >= {"agent", "constraint", "original", "replacement"}
            assert entry["replacement"] == result["actions"][entry["agent"]]
            assert not entry["unresolved"]
        interventions += len(result["interventions"])
    assert interventions > 0  # the untrained policy asks for positions over 0.05
    counts = server.get("/v1/info").json()["shield"]
    assert counts["interventions"] >= interventions / 2 and counts["counts"]["max_position"] > 0


@pytest.mark.slow
def test_every_endpoint_wants_the_token_behind_the_proxy(server):
    server.use("guarded")
    check_token_required(server.url, server.token)


@pytest.mark.slow
def test_a_full_proxied_server_answers_503_with_retry_after(server):
    server.use("guarded")
    check_full_server_sheds_load(server.url, auth(server.token))


@pytest.mark.slow
def test_a_host_beyond_this_machine_gets_a_generated_token(server, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    server.use("exposed")
    token_file = tmp_path / "rl_platform" / "serve-token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    token = guard.read_token(token_file)
    assert server.get("/healthz").status_code == 401
    reply = requests.get(server.url + "/healthz", headers=auth(token), timeout=TIMEOUT)
    assert reply.status_code == 200


@pytest.mark.slow
def test_ab_split_is_sticky_and_near_its_share(server):
    server.use("ab")
    obs = observations(1)[0]

    def arm(session: str) -> str:
        response = requests.post(
            server.url + "/v1/act", json=body(obs, session=session), timeout=TIMEOUT
        )
        assert response.status_code == 200, response.text
        return response.json()["arm"]

    sessions = [f"user-{i}" for i in range(2000)]
    with ThreadPoolExecutor(16) as pool:
        arms = dict(zip(sessions, pool.map(arm, sessions)))
    share = sum(a == "challenger" for a in arms.values()) / len(arms)
    assert 0.08 <= share <= 0.12, share
    again = sessions[:200]
    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(arm, again)) == [arms[s] for s in again]
    assert {server.post("/v1/act", body(obs)).json()["arm"] for _ in range(10)} == {"champion"}
    info = server.get("/v1/info").json()
    assert info["ab"] == {
        "enabled": True,
        "split": 0.1,
        "store": str(server.store),
        "reward_range": [-1e9, 1e9],
    }
    assert info["challenger"]["id"] != info["checkpoint"]["id"]


@pytest.mark.slow
def test_feedback_reaches_the_ab_report_and_survives_a_restart(server):
    server.use("ab")
    obs = observations(1)[0]
    served = {}
    for i in range(40):
        session = f"fb-{i}"
        result = server.post("/v1/act", body(obs, session=session)).json()
        served[session] = result
        reward = 1.0 + 0.01 * i if result["arm"] == "champion" else 2.0 + 0.01 * i
        response = server.post("/v1/feedback", {"session_id": session, "reward": reward})
        assert response.status_code == 200, response.text
        assert response.json()["arm"] == result["arm"]
    # A reward for one decision by its request id.
    first = served["fb-0"]
    response = server.post(
        "/v1/feedback",
        {"session_id": "fb-0", "reward": 1.0, "request_id": first["request_id"]},
    )
    assert response.status_code == 200 and response.json()["request_id"] == first["request_id"]
    assert server.post("/v1/feedback", {"session_id": "nobody", "reward": 1.0}).status_code == 404
    missing = server.post("/v1/feedback", {"session_id": "fb-0", "reward": 1, "request_id": "x"})
    assert missing.status_code == 404 and "x" in missing.json()["message"]
    for bad in (
        {"session_id": "fb-0"},
        {"session_id": "fb-0", "reward": "1"},
        {"session_id": "fb-0", "reward": True},
        {"session_id": "fb-0", "reward": 1.0, "extra": 1},
    ):
        assert server.post("/v1/feedback", bad).status_code == 422
    nan = server.post(
        "/v1/feedback",
        data='{"session_id": "fb-0", "reward": NaN}',
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422 and "finite" in nan.json()["message"]

    report = server.get("/v1/ab").json()
    arms = [r["arm"] for r in served.values()]
    assert report["counts"] == {a: arms.count(a) for a in ("champion", "challenger")}
    assert report["arms"]["champion"]["sessions"] == arms.count("champion")  # 1 decision each
    assert report["arms"]["champion"]["n"] == arms.count("champion")  # the older name
    assert report["split"] == 0.1 and report["store"] == str(server.store)
    assert "verdict" in report and report["min_sessions"] == report["min_samples"] == 30
    # The always-valid test's status: interval, p-value, whether the stopping rule fired.
    assert report["unit"] == "session" and isinstance(report["stopped"], bool)
    assert set(report["difference"]) == {"estimate", "low", "high"}
    assert report["p_value"] is not None and report["alpha"] == 0.05

    server.use("ab", restart=True)  # Serve down and up again on the same store
    assert server.get("/v1/ab").json()["counts"] == report["counts"]
    result = server.post("/v1/act", body(obs, session="fb-3")).json()
    assert result["arm"] == served["fb-3"]["arm"]  # sticky across restarts


@pytest.mark.slow
def test_rewards_outside_the_range_are_422_and_stored_junk_never_breaks_the_report(server):
    server.use("ab")
    assert server.get("/v1/info").json()["ab"]["reward_range"] == [-1e9, 1e9]  # trading: none
    obs = observations(1)[0]
    assert server.post("/v1/act", body(obs, session="junk")).status_code == 200
    before = server.get("/v1/ab").json()
    raw = {"content-type": "application/json"}
    for reward in ("1e308", "-1e10", "1e999", "-Infinity", "NaN", "1.7976931348623157e308"):
        reply = server.post(
            "/v1/feedback", data='{"session_id": "junk", "reward": ' + reward + "}", headers=raw
        )
        assert reply.status_code == 422, (reward, reply.text)
        assert "reward" in reply.json()["message"]
    assert server.get("/v1/ab").json()["counts"] == before["counts"]  # nothing stored
    assert server.post("/v1/feedback", {"session_id": "junk", "reward": 1e9}).status_code == 200

    # What an older version (or an edited file) left in the store: 200 all the same.
    db = sqlite3.connect(server.store)
    with db:
        rows = db.execute("SELECT id FROM decisions ORDER BY id DESC LIMIT 5").fetchall()
        for (row,), junk in zip(rows, [math.inf, -math.inf, 1e308, "lots", -1e308]):
            db.execute("UPDATE decisions SET reward = ? WHERE id = ?", (junk, row))
    db.close()
    reply = server.get("/v1/ab")
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert sum(report["ignored"].values()) == 5
    counted = sum(arm["decisions"] for arm in report["arms"].values())
    assert counted == sum(report["counts"].values()) - 5
    for arm in report["arms"].values():
        assert all(v is None or math.isfinite(v) for v in [arm["mean"], arm["std"]])


def test_a_challenger_rolls_out_without_downtime(server):
    """Deploying again (here: adding a challenger) updates the app while it answers."""
    import threading
    import time

    server.use("plain")
    obs = observations(1, seed=7)[0]
    stop, codes = threading.Event(), []

    def hammer() -> None:
        session, i = requests.Session(), 0
        while not stop.is_set():
            reply = session.post(
                server.url + "/v1/act", json=body(obs, f"rollout-{i}"), timeout=TIMEOUT
            )
            codes.append(reply.status_code)
            i += 1

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        time.sleep(1.0)
        server.use("ab")
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
    assert len(codes) > 20 and set(codes) == {200}, sorted(set(codes))
    arms = {server.post("/v1/act", body(obs, f"after-{i}")).json()["arm"] for i in range(200)}
    assert arms == {"champion", "challenger"}
