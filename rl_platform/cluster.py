"""Run experiments and sweeps on a Ray cluster through the Ray Jobs API.

``rlp submit EXPERIMENT_OR_SWEEP.yaml --address http://127.0.0.1:8265`` validates the
YAML here, writes the resolved experiment into a job working directory and submits
``rlp train`` (or ``rlp tune``) as a Ray job that carries it and this checkout's
``rl_platform`` package; runs land in the experiment's ``storage``. The client always
speaks Ray's token mode (``RAY_AUTH_MODE=token``): keep the Jobs API off public networks
(ShadowRay, CVE-2023-48022). Storage, tokens, clusters: docs/cluster.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rl_platform.config import ConfigError, ExperimentConfig, load_experiment
from rl_platform.seeds import parse_seeds
from rl_platform.trust import worker_env_vars

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
JOB_YAML = "experiment.yaml"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class ClusterError(RuntimeError):
    """The cluster cannot be reached, refused a request, or has no such job."""


@dataclass
class SubmittedJob:
    """A job handed to the cluster."""

    job_id: str
    address: str
    command: str  # "train" or "tune"
    storage: str
    entrypoint: str
    status: str = "PENDING"
    message: str = ""


def job_client(address: str | None = None):
    """A ``JobSubmissionClient`` in token mode for ``address`` (see :func:`resolve_address`).

    Raises:
        ClusterError: the cluster cannot be reached or refuses the token.
    """
    address = resolve_address(address)
    _warn_if_exposed(address)
    _token_mode()
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as err:  # noqa: BLE001 (connection, auth and version errors alike)
        raise ClusterError(_explain(address, err)) from None


def _token_mode() -> None:
    """Speak Ray's token authentication in this process (Ray's CLI clients do not by default).

    An explicit ``RAY_AUTH_MODE`` is respected; Ray reads its config once per process, so
    it is re-read after the variable is set.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    try:
        from ray._raylet import Config

        Config.initialize("")
    except ImportError:  # pragma: no cover (a Ray without token auth)
        pass


def resolve_address(address: str | None) -> str:
    """The Jobs API URL to use.

    ``address``, else ``$RAY_API_SERVER_ADDRESS``, else ``$RAY_ADDRESS`` if it is an http
    URL, else :data:`DEFAULT_ADDRESS`.
    """
    if address:
        return address if "://" in address else f"http://{address}"
    env = os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS", "")
    return env if env.startswith(("http://", "https://")) else DEFAULT_ADDRESS


def _warn_if_exposed(address: str) -> None:
    """Warn when plain HTTP would carry the token to a public address."""
    parsed = urlparse(address)
    host = parsed.hostname or ""
    try:
        private = host == "localhost" or not ipaddress.ip_address(host).is_global
    except ValueError:
        private = False  # a DNS name: cannot tell
    if parsed.scheme == "http" and not private:
        log.warning(
            "%s: the Jobs API over plain HTTP to a non-private address; reach the cluster "
            "through an SSH tunnel (`ray dashboard CLUSTER.yaml`) or `kubectl port-forward` "
            "and use http://127.0.0.1:8265",
            address,
        )


def _explain(address: str, err: Exception) -> str:
    text = f"{type(err).__name__}: {err}"
    # An HTTP 401/403 or Ray's token error; the address is left out (a port such as 40329
    # is no status code).
    refused = re.search(r"(?<![\w.:])40[13](?![\w.])|uthenticat", text.replace(address, ""))
    if refused:
        return (
            f"{address}: the cluster refused the request ({text.splitlines()[0]}). It runs "
            "with token authentication: put the cluster's token in ~/.ray/auth_token or "
            "$RAY_AUTH_TOKEN (e.g. `ray get-auth-token` on the head node)."
        )
    return (
        f"{address}: cannot reach the Ray Jobs API ({text.splitlines()[0]}). Is the head "
        "running with its dashboard, and is the port forwarded (ray dashboard CLUSTER.yaml, "
        "or kubectl port-forward svc/<cluster>-head-svc 8265:8265)?"
    )


# --------------------------------------------------------------------------- submit


def submit(
    source: str | Path,
    overrides: list[str] | None = None,
    *,
    address: str | None = None,
    storage: str | None = None,
    ship_package: bool = True,
    seeds: str | None = None,
) -> SubmittedJob:
    """Validate an experiment or sweep YAML and submit it as a Ray job.

    Args:
        source: an experiment YAML, or a sweep YAML (one with a ``tune`` section).
        overrides: ``key.path=value`` overrides, applied and validated here.
        address: the Jobs API URL (see :func:`job_client`).
        storage: where runs land on the cluster (overrides the YAML's ``storage``): an
            absolute path every node sees.
        ship_package: upload this checkout's ``rl_platform`` with the job (off: use the
            version installed on the cluster).
        seeds: a seed spec (``"0-4"``): the job runs ``rlp train --seeds`` (one Tune run of
            the seeds, spread over the nodes, and their aggregate); experiments only.

    Raises:
        ConfigError: the YAML, the overrides or the storage path are invalid.
        ClusterError: the cluster cannot be reached or refused the job.
    """
    experiment = load_experiment(source, overrides or [])
    command = experiment_kind(experiment)
    seed_option = ""
    if seeds is not None:
        if command != "train":
            raise ConfigError(
                f"{source}: --seeds trains an experiment's seeds; a sweep YAML (one with a "
                "tune section) searches its own seeds: drop --seeds or the tune section."
            )
        seed_option = f" --seeds {','.join(map(str, parse_seeds(seeds)))}"
    storage = _check_storage(storage or experiment.storage, source)
    if seeds is not None and "://" in storage:
        raise ConfigError(
            f"{source}: --seeds needs a storage path every node sees, not {storage!r}: a "
            "multi-seed run's group directory is written on a filesystem."
        )
    _check_tracking_uri(experiment, source)
    experiment = experiment.model_copy(update={"storage": storage})
    client = job_client(address)
    workdir = Path(tempfile.mkdtemp(prefix="rlp-job-"))
    (workdir / JOB_YAML).write_text(experiment.to_yaml())
    runtime_env: dict[str, Any] = {"working_dir": str(workdir)}
    if worker_env_vars():  # the job (and its workers) trust the modules trusted here
        runtime_env["env_vars"] = worker_env_vars()
    if ship_package:
        package = Path(__file__).resolve().parent  # this file is at the package's top
        runtime_env["py_modules"] = [str(package)]
        runtime_env["excludes"] = ["__pycache__", "*.pyc"]
    entrypoint = (
        f"python -m rl_platform {command} {JOB_YAML} --address auto --output {storage}{seed_option}"
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        job_id = client.submit_job(
            entrypoint=entrypoint,
            runtime_env=runtime_env,
            submission_id=f"rlp-{_slug(experiment.name)}-{stamp}-{os.urandom(2).hex()}",
            metadata={
                "rl_platform_command": command,
                "experiment": experiment.name,
                "storage": storage,
                **({"seeds": seed_option.split()[-1]} if seeds is not None else {}),
            },
        )
    except Exception as err:  # noqa: BLE001
        raise ClusterError(_explain(client.get_address(), err)) from None
    return SubmittedJob(job_id, client.get_address(), command, storage, entrypoint)


def _check_storage(storage: str | None, source: str | Path) -> str:
    if not storage:
        raise ConfigError(
            f"{source}: `rlp submit` needs a storage path for the runs: set `storage:` in the "
            "YAML or pass --storage: a cloud URI (s3://bucket/runs) or an absolute path every "
            "node of the cluster sees (an NFS/EFS mount, a Kubernetes volume, /data in "
            "docker/compose.yaml)."
        )
    if "://" in storage:  # cloud storage Tune writes to from every node (rl_platform.storage)
        return storage
    if not storage.startswith("/"):
        raise ConfigError(
            f"{source}: storage = {storage!r} must be an absolute path: a relative one "
            "would land in the job's temporary working directory and be lost."
        )
    return storage


def _check_tracking_uri(experiment: ExperimentConfig, source: str | Path) -> None:
    """Refuse an MLflow store at a relative path: the job's working directory is temporary."""
    mlflow = experiment.tracking.mlflow if experiment.tracking else None
    if mlflow is None:
        return
    uri = mlflow.tracking_uri
    relative = (uri.startswith("sqlite:///") and not uri.startswith("sqlite:////")) or (
        uri.startswith("file:") and not uri.startswith(("file:///", "file://localhost/"))
    )
    if relative:
        raise ConfigError(
            f"{source}: tracking.mlflow.tracking_uri = {uri!r} is a relative path: in a job "
            "it would land in the job's temporary working directory and be lost. Give an "
            "absolute path every node sees (sqlite:////data/mlflow.db) or a tracking server "
            "(http://HOST:5000)."
        )


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)[:40]


# --------------------------------------------------------------------------- jobs


@dataclass
class JobInfo:
    """What ``rlp jobs`` shows about one job."""

    job_id: str
    status: str
    entrypoint: str
    message: str
    start_time: float | None  # seconds since the epoch
    end_time: float | None
    metadata: dict[str, str]


def _info(details: Any, job_id: str | None = None) -> JobInfo:
    return JobInfo(
        job_id=job_id or details.submission_id or details.job_id or "?",
        status=str(getattr(details.status, "value", details.status)),
        entrypoint=details.entrypoint,
        message=details.message or "",
        start_time=details.start_time / 1000 if details.start_time else None,
        end_time=details.end_time / 1000 if details.end_time else None,
        metadata=dict(details.metadata or {}),
    )


def list_jobs(address: str | None = None) -> list[JobInfo]:
    """Every job the cluster knows, newest first."""
    client = job_client(address)
    jobs = [_info(d) for d in _call(client, client.list_jobs)]
    return sorted(jobs, key=lambda j: j.start_time or 0, reverse=True)


def job_status(job_id: str, address: str | None = None) -> JobInfo:
    """One job's status, times, message and metadata."""
    client = job_client(address)
    return _info(_call(client, client.get_job_info, job_id), job_id)


def job_logs(job_id: str, address: str | None = None) -> str:
    """A job's driver log so far."""
    client = job_client(address)
    return _call(client, client.get_job_logs, job_id)


def stop_job(job_id: str, address: str | None = None, wait_s: float = 30.0) -> JobInfo:
    """Ask the cluster to stop a job; wait up to ``wait_s`` for it to end."""
    client = job_client(address)
    _call(client, client.stop_job, job_id)
    deadline = time.monotonic() + wait_s
    info = job_status(job_id, address)
    while info.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        info = job_status(job_id, address)
    return info


def follow(
    job_id: str, address: str | None = None, write: Callable[[str], None] = print
) -> JobInfo:
    """Stream a job's log to ``write`` until the job ends; returns its final status."""
    client = job_client(address)
    _call(client, client.get_job_info, job_id)  # a clear error for an unknown id

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    try:
        asyncio.run(tail())
    except Exception as err:  # noqa: BLE001 (the stream can drop; the status decides)
        log.warning("log stream of %s ended: %s", job_id, err)
    info = job_status(job_id, address)
    while info.status not in TERMINAL:
        time.sleep(1.0)
        info = job_status(job_id, address)
    return info


def _call(client: Any, method: Callable[..., Any], *args: Any) -> Any:
    try:
        return method(*args)
    except RuntimeError as err:
        text = str(err)
        if "does not exist" in text or "404" in text:
            raise ClusterError(f"no job {args[0]!r} on {client.get_address()}") from None
        raise ClusterError(_explain(client.get_address(), err)) from None
    except Exception as err:  # noqa: BLE001
        raise ClusterError(_explain(client.get_address(), err)) from None


def experiment_kind(experiment: ExperimentConfig) -> str:
    """``tune`` for a sweep YAML, else ``train``."""
    return "tune" if experiment.tune is not None else "train"
