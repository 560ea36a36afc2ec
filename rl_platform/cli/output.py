"""How ``rlp`` commands print and end: the two consoles, the exit codes, one-paragraph errors."""

from __future__ import annotations

import signal
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from rl_platform.ray_session import received_signal

console = Console()
err_console = Console(stderr=True)

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: MESSAGE`` as one paragraph on stderr and exit with `code`.

    The message is plain text: brackets in it (``pip install -e '.[vmas]'``) are printed.
    """
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_notice(line: str) -> None:
    """Print a one-line notice before the progress rows (e.g. which sampler runs)."""
    console.print(f"[cyan]{escape(line)}[/]", highlight=False, soft_wrap=True)


def interrupted_code() -> int:
    """130 after Ctrl-C, 143 after SIGTERM."""
    return EXIT_TERMINATED if received_signal() == signal.SIGTERM else EXIT_INTERRUPTED


def stopped_before_start(what: str) -> NoReturn:
    """Exit as interrupted when Ctrl-C or SIGTERM came before the run or sweep started."""
    err_console.print(f"interrupted before the {what} started.", highlight=False)
    raise typer.Exit(interrupted_code())
