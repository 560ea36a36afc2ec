"""The ``rlp`` command line: parses arguments, calls the library, renders progress.

Exit codes: 0 success; 1 a run, job or cluster call failed; 2 bad input, in one paragraph
with no traceback; 130 Ctrl-C (SIGINT); 143 SIGTERM (docs/getting-started.md). One module
per command group (``output`` holds the consoles, exit codes and ``fail``; ``options`` the
options several commands share); each imports Ray, torch and the training stack only
inside its commands, so ``rlp --help``, ``rlp schema`` and a refused YAML stay quick.
"""

from __future__ import annotations

import typer

from rl_platform.cli import (
    compare,
    envs,
    evaluate,
    export,
    jobs,
    monitor,
    schema,
    serve,
    train,
    tune,
)
from rl_platform.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "app", "main"]

app = typer.Typer(
    name="rlp",
    help="Multi-agent reinforcement learning on Ray: train, sweep, submit, evaluate, serve.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
# The order here is the order of `rlp --help`.
app.add_typer(envs.envs_app, name="envs")
app.command()(train.train)
app.command()(train.adapt)
app.command()(schema.schema)
app.command()(tune.tune)
app.command()(jobs.submit)
app.add_typer(jobs.jobs_app, name="jobs")
app.command()(evaluate.evaluate)
app.command()(evaluate.finetune)
app.command()(compare.compare)
app.command()(serve.serve)
app.command()(export.export)
app.command()(monitor.monitor)


def main() -> None:
    """Entry point for ``python -m rl_platform``."""
    app()
