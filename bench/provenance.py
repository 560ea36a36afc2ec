"""Where a bench's figures come from: the checkout's commit (shared by the bench scripts)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str | None:
    """The checkout's short commit, with ``+dirty`` when it has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head and head + ("+dirty" if dirty else "")
