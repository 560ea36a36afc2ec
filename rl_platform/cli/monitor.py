"""``rlp monitor``: a run's figures and anomalies as a dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rl_platform.cli.output import EXIT_INTERRUPTED, console, fail


def monitor(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory of rlp train, or a trial folder of rlp tune.")
    ],
    follow: Annotated[
        bool, typer.Option(help="Re-render as the run goes on; stop when it ends.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between checks with --follow.")] = 10.0,
) -> None:
    """Plot a run's figures and anomalies: RUN_DIR/monitor/index.html and PNGs.

    [bold]Examples[/]

      rlp monitor runs/quickstart/20261125-101500

      rlp monitor runs/quickstart/20261125-101500 --follow
    """
    from rl_platform.monitoring import follow as follow_run
    from rl_platform.monitoring import read_anomalies, render_dashboard
    from rl_platform.monitoring.io import RESULT_FILE, result_file
    from rl_platform.runs import RunDir

    if not (RunDir(run_dir).metrics.is_file() or result_file(run_dir).is_file()):
        fail(
            f"{run_dir}: no {RunDir(run_dir).metrics.name} (nor {RESULT_FILE}); expected a "
            "run directory of rlp train that has finished an iteration."
        )

    def report(plots) -> None:
        anomalies = read_anomalies(run_dir)
        console.print(f"{plots['index']} ({len(anomalies)} anomalies logged)", highlight=False)
        for anomaly in anomalies:
            console.print(f"  [yellow]{anomaly.kind}[/] {anomaly.message}", highlight=False)

    if follow:
        try:
            follow_run(run_dir, interval_s=interval, on_update=report)
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
    else:
        report(render_dashboard(run_dir))
