"""``rlp serve``: a trained policy over HTTP with Ray Serve."""

from __future__ import annotations

import math
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from rl_platform.cli.output import EXIT_FAILED, console, err_console, fail
from rl_platform.registry import install_hint
from rl_platform.serving import guard
from rl_platform.serving.guard import BODY_TIMEOUT_S

# What ray[serve] adds to Ray (pyproject.toml's serve extra), as import names.
SERVE_PACKAGES = frozenset({"fastapi", "starlette", "uvicorn", "watchfiles"})


def serve(
    checkpoint: Annotated[
        str,
        typer.Argument(
            help="A checkpoint or run directory: a path or a storage URI (s3://, file://...)."
        ),
    ],
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    host: Annotated[
        str,
        typer.Option(
            help="Interface to bind (keep 127.0.0.1; put a proxy in front). Any other "
            "host requires a bearer token (generated if no --token-file)."
        ),
    ] = "127.0.0.1",
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="Require 'Authorization: Bearer <token>' on every endpoint, the token "
            "being this file's content (mode 0600). Default: none on 127.0.0.1; on other "
            "hosts ~/.config/rl_platform/serve-token, generated if absent."
        ),
    ] = None,
    challenger: Annotated[
        str | None,
        typer.Option(help="A second checkpoint (path or URI) for an A/B test (same env)."),
    ] = None,
    split: Annotated[float, typer.Option(help="Share of sessions the challenger serves.")] = 0.1,
    shield: Annotated[
        bool, typer.Option(help="Filter served actions through the run's safety section.")
    ] = False,
    store: Annotated[
        Path | None,
        typer.Option(help="Feedback store (sqlite); default beside the checkpoint with A/B."),
    ] = None,
    replicas: Annotated[int, typer.Option(help="Serve replicas.")] = 1,
    max_batch_size: Annotated[int, typer.Option(help="Requests per forward pass.")] = 32,
    batch_wait_ms: Annotated[float, typer.Option(help="How long a batch waits to fill.")] = 2.0,
    batching: Annotated[bool, typer.Option(help="Batch requests (serve.batch).")] = True,
    max_ongoing_requests: Annotated[
        int | None,
        typer.Option(help="Requests a replica works on at once (default 4 x --max-batch-size)."),
    ] = None,
    max_queued_requests: Annotated[
        int | None,
        typer.Option(
            help="Requests waiting for those (default: as many); more get 503 + Retry-After."
        ),
    ] = None,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a request body may take to arrive (then 408).")
    ] = BODY_TIMEOUT_S,
    reward_range: Annotated[
        tuple[float, float] | None,
        typer.Option(
            help="Feedback rewards accepted, LOW HIGH (default: the env's, else -1e9 1e9)."
        ),
    ] = None,
    proxy: Annotated[
        bool,
        typer.Option(
            help="Serve's HTTP proxy in front even for one replica in a private Ray "
            "(default there: the replica listens on --port itself, direct ingress)."
        ),
    ] = False,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to serve on (the policies travel to it as data); default: a "
            "private local Ray."
        ),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(help="Deploy on the --address cluster and return; run again to update."),
    ] = False,
) -> None:
    """Serve a trained policy over HTTP with Ray Serve (Ctrl-C stops it).

    POST /v1/act, POST /v1/feedback, GET /v1/ab, GET /v1/info, GET /healthz; the
    OpenAPI schema is at /docs. Only the weights-only policy export is loaded.

    [bold]Examples[/]

      rlp serve runs/quickstart/20261125-101500 --port 8000

      rlp serve runs/quickstart/20261125-101500 --challenger finetuned/ --split 0.1

      rlp serve RUN --address auto --detach    # again with --challenger NEW: rolling update

      rlp serve s3://bucket/runs/quickstart/20261125-101500 --address auto --detach
    """
    if not 0.0 <= split <= 1.0:
        fail(f"--split is a share in [0, 1], got {split}.")
    if not 0 < port < 65536:
        fail(f"--port must be in 1..65535, got {port}.")
    if detach and not address:
        fail("--detach needs --address: a private Ray ends with this process.")
    for name, value in (
        ("--max-ongoing-requests", max_ongoing_requests),
        ("--max-queued-requests", max_queued_requests),
    ):
        if value is not None and value < 1:
            fail(f"{name} must be >= 1, got {value}.")
    if not (math.isfinite(body_timeout) and body_timeout > 0):
        fail(f"--body-timeout must be a positive number of seconds, got {body_timeout}.")
    if reward_range is not None and not (
        all(math.isfinite(v) for v in reward_range) and reward_range[0] < reward_range[1]
    ):
        fail(f"--reward-range must be two finite numbers LOW < HIGH, got {reward_range}.")
    if token_file is not None:
        try:  # before Ray and the checkpoint: a bad token file is the cheapest thing to fix
            guard.read_token(token_file)
        except guard.TokenFileError as err:
            fail(f"--token-file: {err}")

    try:  # Ray Serve's HTTP stack is the serve extra: a clear message, not a traceback
        from rl_platform.serving.app import ServingError
        from rl_platform.serving.app import serve as run_server
    except ImportError as err:
        if err.name is None or err.name.partition(".")[0] not in SERVE_PACKAGES:
            raise
        fail(f"rlp serve needs Ray Serve ({err.name} is not installed): {install_hint('serve')}")
    from rl_platform.storage import StorageError, fetched, is_uri

    if is_uri(checkpoint) and challenger is not None and store is None:
        fail(
            "--challenger with a champion from a storage URI needs --store FILE: the default "
            "feedback store lies beside the champion's checkpoint, which is remote."
        )

    def ready(info) -> None:
        if info.token_file is not None:
            made = "generated now, " if info.token_created else ""
            console.print(
                f"bearer token required: 'Authorization: Bearer <token>', the token in "
                f"{info.token_file} ({made}readable by you only)",
                highlight=False,
            )
        if info.exposed:
            err_console.print(
                f"[bold yellow]warning:[/] listening on {host}: other machines can reach this "
                "server (it needs the bearer token, over plain HTTP: put a TLS proxy in front "
                "or bind 127.0.0.1)",
                highlight=False,
                soft_wrap=True,
            )
        console.print(
            f"serving {info.checkpoint} ({info.checkpoint_id}) at {info.url}"
            + (f", challenger {info.challenger} on {info.split:.0%}" if info.challenger else "")
            + (", shielded" if info.shield else "")
            + (" (direct ingress)" if info.direct_ingress else "")
            + " (Ctrl-C stops)",
            highlight=False,
        )

    try:
        with ExitStack() as stack:  # downloaded URIs are removed when the server stops
            champion = stack.enter_context(fetched(checkpoint))
            rival = stack.enter_context(fetched(challenger)) if challenger else None
            run_server(
                champion,
                host=host,
                port=port,
                challenger=rival,
                split=split,
                shield=shield,
                store=store,
                num_replicas=replicas,
                max_batch_size=max_batch_size,
                batch_wait_timeout_s=batch_wait_ms / 1000.0,
                batching=batching,
                address=address,
                direct_ingress=False if proxy else None,
                on_ready=ready,
                blocking=not detach,
                token_file=token_file,
                reward_range=reward_range,
                max_ongoing_requests=max_ongoing_requests,
                max_queued_requests=max_queued_requests,
                body_timeout_s=body_timeout,
            )
    except (ServingError, StorageError) as err:
        fail(str(err))
    except RuntimeError as err:  # Serve could not deploy the application
        fail(f"Ray Serve could not start the application: {err}", EXIT_FAILED)
