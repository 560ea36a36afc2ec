"""``rlp compare``: algorithms side by side with IQM, CIs, probability of improvement."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from rl_platform.cli.output import console, fail


def compare(
    dirs: Annotated[
        list[Path],
        typer.Argument(
            metavar="DIR",
            help="Multi-seed group dirs (aggregate.json), run dirs (one run each; runs of one "
            "experiment with other seeds form one entry) or sweep dirs.",
        ),
    ],
    baseline: Annotated[
        str | None,
        typer.Option(help="An entry (an algorithm): P(improvement) of each other over it."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Where compare.json/.png/.md go; default ./compare-<timestamp>."),
    ] = None,
    reps: Annotated[
        int | None, typer.Option(help="Bootstrap replications per interval (default 5,000).")
    ] = None,
) -> None:
    """Compare algorithms over envs: IQM and mean with 95% CIs, P(X > Y), profiles.

    Scores are normalized per env (0 random play, 1 the best baseline). Writes
    compare.json (every figure), compare.png and compare.md (docs/statistics.md).

    [bold]Example[/]

      rlp compare runs/two_step_qmix/20261206-070000 runs/two_step_vdn/20261206-071000
    """
    from rl_platform.evaluation.compare import CompareError
    from rl_platform.evaluation.compare import compare as run_compare
    from rl_platform.evaluation.compare_report import (
        HEADERS,
        default_output,
        fmt_estimate,
        summary_rows,
        write_comparison,
    )
    from rl_platform.evaluation.statistics import REPS

    reps = REPS if reps is None else reps
    if reps < 100:
        fail(f"--reps must be at least 100 for a 95% interval, got {reps}.")
    try:
        with console.status("bootstrapping ..."):
            result = run_compare(dirs, baseline=baseline, reps=reps)
            files = write_comparison(result, output if output is not None else default_output())
    except (CompareError, OSError) as err:
        fail(str(err))
    table = Table(title=f"rlp compare ({result['score']}, {result['scale']} scale in the plots)")
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i < 2 else "right", no_wrap=i < 2)
    for row in summary_rows(result):
        table.add_row(*row)
    # never fold an interval over two lines: wider than the terminal, the terminal wraps it
    wide = Console(file=console.file, width=max(console.width, _table_width(table)))
    wide.print(table)
    for pair in result["probability_of_improvement"]:
        console.print(f"P({pair['x']} > {pair['y']}) = {fmt_estimate(pair, 2)}", highlight=False)
    for note in result["notes"]:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    for path in files.values():
        console.print(str(path), highlight=False, soft_wrap=True)


def _table_width(table: Table) -> int:
    """The width `table` needs to print each cell on one line."""
    probe = Console(width=1_000)
    return Measurement.get(probe, probe.options, table).maximum
