"""Options several ``rlp`` commands share: the env modules they trust, --trust."""

from __future__ import annotations

from typing import Annotated

import typer

from rl_platform.cli.output import fail
from rl_platform.trust import UntrustedModuleError, trust_modules

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
