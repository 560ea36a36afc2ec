import os
import signal
import threading
from pathlib import Path

import pytest

# A suite started in the background by a shell without job control (`cmd &` in a script)
# inherits SIGINT ignored, and so would every `rlp` it starts: the tests that stop one
# with SIGINT (Ctrl-C) would wait on it forever. Python's handler here gives children
# the default disposition back.
if (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
):
    signal.signal(signal.SIGINT, signal.default_int_handler)

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
