import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"


@pytest.fixture
def quickstart_path() -> Path:
    return QUICKSTART


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): two test processes, fewer on one core.

    Each integration module starts a Ray of its own; more than two at once only share the
    same cores more thinly. `-n N` sets another number, `-n 0` runs in one process.
    """
    return min(2, os.cpu_count() or 1)
