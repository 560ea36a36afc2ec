"""The platform's version and source commit, importable without anything else of the package."""

from __future__ import annotations

import subprocess
from pathlib import Path

__version__ = "0.1.0"


def source_commit() -> str | None:
    """The checkout's short commit (``+dirty`` with uncommitted changes); None outside git."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head and head + ("+dirty" if dirty else "")
