"""TODO: curiosity (issue 13)."""

from __future__ import annotations

from typing import Any


def check(experiment: Any, env_cls: type) -> None:
    """Raise ValueError when the experiment's settings cannot run on this env/algorithm."""
    raise ValueError("not implemented yet")
