"""Where a bench's figures come from: the checkout's commit (shared by the bench scripts)."""

from __future__ import annotations

from pathlib import Path

from rl_platform.version import source_commit

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str | None:
    """The checkout's short commit, with ``+dirty`` when it has uncommitted changes."""
    return source_commit()
