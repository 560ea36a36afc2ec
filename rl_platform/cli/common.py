"""What every ``rlp`` command shares: the consoles, the exit codes, errors, trust options."""

from __future__ import annotations

import signal
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from rl_platform.ray_session import received_signal
from rl_platform.trust import UntrustedModuleError, trust_modules

console = Console()
err_console = Console(stderr=True)

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: MESSAGE`` as one paragraph on stderr and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def interrupted_code() -> int:
    """130 after Ctrl-C, 143 after SIGTERM."""
    return EXIT_TERMINATED if received_signal() == signal.SIGTERM else EXIT_INTERRUPTED


def stopped_before_start(what: str) -> NoReturn:
    """Exit as interrupted when Ctrl-C or SIGTERM came before the run or sweep started."""
    err_console.print(f"interrupted before the {what} started.", highlight=False)
    raise typer.Exit(interrupted_code())


TrustModuleOption = Annotated[
    list[str] | None,
    typer.Option(
        "--trust-module",
        help="Trust this module and its submodules as an env source "
        "(pettingzoo:MODULE:factory); repeatable; also $RLP_TRUSTED_MODULES. Only "
        "pettingzoo.*, mpe2.* and vmas.* are trusted otherwise.",
    ),
]
TrustOption = Annotated[
    bool,
    typer.Option(
        "--trust",
        help="Resume even from a directory someone else owns or can write. Resuming "
        "unpickles its state, which runs code of whoever wrote it.",
    ),
]


def use_trusted_modules(names: list[str] | None) -> None:
    """Add --trust-module names to this process's (and its Ray workers') trusted modules."""
    try:
        trust_modules(names or [])
    except UntrustedModuleError as err:
        fail(str(err))
