"""Ports and ingress for :func:`~rl_platform.serving.app.serve`.

Free ports, a port check before Ray starts, and Ray Serve's direct-ingress settings.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Any

from rl_platform.serving.arms import ServingError


def direct_ingress_possible(
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


def direct_ingress_env(port: int) -> dict[str, str]:
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


def serve_running() -> bool:
    """Whether the connected Ray runs a Serve controller."""
    import ray

    actors = ray.util.list_named_actors(all_namespaces=True)
    return any(a["name"] == "SERVE_CONTROLLER_ACTOR" and a["namespace"] == "serve" for a in actors)


def check_port_free(host: str, port: int, wait_s: float = 3.0) -> None:
    """Raise :class:`~rl_platform.serving.arms.ServingError` unless ``host:port`` is free.

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
