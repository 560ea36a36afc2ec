"""``rlp submit`` and ``rlp jobs``: experiments and sweeps as jobs on a Ray cluster."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rl_platform.cli.options import TrustModuleOption, use_trusted_modules
from rl_platform.cli.output import EXIT_FAILED, EXIT_INTERRUPTED, console, fail
from rl_platform.config import ConfigError
from rl_platform.trust import UntrustedModuleError

ADDRESS_HELP = "Ray Jobs API, http://HOST:8265 (default $RAY_API_SERVER_ADDRESS or 127.0.0.1)."


def submit(
    experiment: Annotated[Path, typer.Argument(help="Experiment or sweep YAML.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a field: key.path=value (YAML value)."),
    ] = None,
    address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Where runs land: an absolute path every node sees (default: YAML)."),
    ] = None,
    follow: Annotated[
        bool, typer.Option(help="Stream the job's log until it ends; exit with its status.")
    ] = False,
    ship_package: Annotated[
        bool, typer.Option(help="Upload this rl_platform with the job (else: the cluster's).")
    ] = True,
    seeds: Annotated[
        str | None,
        typer.Option(help="Train these seeds (0-4, 0,2,5) as one run spread over the nodes."),
    ] = None,
    trust_module: TrustModuleOption = None,
) -> None:
    """Submit an experiment (rlp train) or a sweep (rlp tune) to a Ray cluster.

    The YAML is validated here first; the job runs the same command inside the cluster.
    Modules trusted here (--trust-module, $RLP_TRUSTED_MODULES) are trusted in the job.

    [bold]Examples[/]

      rlp submit experiments/quickstart.yaml --storage /data/runs --follow

      rlp submit experiments/quickstart.yaml --address http://127.0.0.1:8265 --storage /data/runs

      rlp submit experiments/sweeps/rendezvous_ppo_sweep.yaml --storage /data/runs

      rlp submit experiments/two_step_qmix.yaml --seeds 0-9 --storage /data/runs
    """
    from rl_platform.cluster import ClusterError
    from rl_platform.cluster import submit as submit_job

    use_trusted_modules(trust_module)
    try:
        job = submit_job(
            experiment,
            set_ or [],
            address=address,
            storage=storage,
            ship_package=ship_package,
            seeds=seeds,
        )
    except (ConfigError, UntrustedModuleError) as err:
        fail(str(err))
    except ClusterError as err:
        fail(str(err), EXIT_FAILED)
    console.print(f"submitted {job.job_id} to {job.address} (rlp {job.command})", highlight=False)
    console.print(f"runs land in {job.storage}/<name>/ on the cluster", highlight=False)
    if not follow:
        console.print(f"follow it with: rlp jobs logs {job.job_id} --follow", highlight=False)
        return
    follow_job(job.job_id, address)


def follow_job(job_id: str, address: str | None) -> None:
    """Stream a job's log; exit 0 if it succeeded, else 1 with its message."""
    from rl_platform.cluster import ClusterError, follow

    try:
        info = follow(job_id, address, write=lambda text: console.out(text, end=""))
    except ClusterError as err:
        fail(str(err), EXIT_FAILED)
    except KeyboardInterrupt:
        console.print(
            f"\nstopped following; {job_id} keeps running on the cluster "
            f"(rlp jobs logs {job_id} --follow, rlp jobs stop {job_id})",
            highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if info.status == "SUCCEEDED":
        console.print(f"[green]{job_id} SUCCEEDED[/]", highlight=False)
        return
    fail(f"{job_id} {info.status}: {info.message}", EXIT_FAILED)


jobs_app = typer.Typer(help="List, inspect, follow and stop cluster jobs.", no_args_is_help=True)


def cluster_call(function, *args, **kwargs):
    """Call a ``rl_platform.cluster`` function; a ``ClusterError`` exits 1 in one paragraph."""
    from rl_platform.cluster import ClusterError

    try:
        return function(*args, **kwargs)
    except ClusterError as err:
        fail(str(err), EXIT_FAILED)


def when(seconds: float | None) -> str:
    """A job's start or end time (epoch seconds) in local time, ``—`` when not yet."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "—"


@jobs_app.command("list")
def jobs_list(address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None) -> None:
    """List the cluster's jobs, newest first.

    [bold]Example[/]

      rlp jobs list --address http://127.0.0.1:8265
    """
    from rl_platform.cluster import list_jobs

    table = Table(title="jobs")
    for column in ("job id", "status", "experiment", "started", "ended"):
        table.add_column(column)
    for job in cluster_call(list_jobs, address):
        name = job.metadata.get("experiment", "")
        table.add_row(job.job_id, job.status, name, when(job.start_time), when(job.end_time))
    console.print(table)


@jobs_app.command("status")
def jobs_status(
    job_id: Annotated[str, typer.Argument(help="The id rlp submit printed.")],
    address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None,
) -> None:
    """Show one job's status, times, entrypoint and message.

    [bold]Example[/]

      rlp jobs status rlp-quickstart-20261127-120715-5879
    """
    from rl_platform.cluster import job_status

    job = cluster_call(job_status, job_id, address)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("job id", job.job_id)
    table.add_row("status", job.status)
    table.add_row("entrypoint", job.entrypoint)
    table.add_row("started", when(job.start_time))
    table.add_row("ended", when(job.end_time))
    for key, value in job.metadata.items():
        table.add_row(key, value)
    if job.message:
        table.add_row("message", job.message)
    console.print(table)


@jobs_app.command("logs")
def jobs_logs(
    job_id: Annotated[str, typer.Argument(help="The id rlp submit printed.")],
    address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None,
    follow: Annotated[bool, typer.Option(help="Stream until the job ends.")] = False,
) -> None:
    """Print a job's log (with --follow: stream it, exit with the job's status).

    [bold]Example[/]

      rlp jobs logs rlp-quickstart-20261127-120715-5879 --follow
    """
    from rl_platform.cluster import job_logs

    if follow:
        follow_job(job_id, address)
        return
    console.out(cluster_call(job_logs, job_id, address), end="")


@jobs_app.command("stop")
def jobs_stop(
    job_id: Annotated[str, typer.Argument(help="The id rlp submit printed.")],
    address: Annotated[str | None, typer.Option(help=ADDRESS_HELP)] = None,
) -> None:
    """Stop a running job (its checkpoints stay in storage: rlp train --resume RUN_DIR).

    [bold]Example[/]

      rlp jobs stop rlp-quickstart-20261127-120715-5879
    """
    from rl_platform.cluster import stop_job

    job = cluster_call(stop_job, job_id, address)
    console.print(f"{job.job_id}: {job.status}", highlight=False)
