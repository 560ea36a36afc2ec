import signal
import threading
from collections.abc import Callable

import pytest
from click.testing import Result


@pytest.fixture(autouse=True)
def restore_sigterm():
    """`rlp train`/`tune` run in process (CliRunner) make SIGTERM raise: undo it after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Runs `rlp ARGS` in this process (typer's CliRunner), 200 columns wide.

    ``cli("train", "bad.yaml").exit_code``; ``.stdout``, ``.stderr`` and ``.output``
    (both) hold what it printed. For what needs a real process use the `rlp` fixture.
    """
    from typer.testing import CliRunner

    from rl_platform.cli import app

    runner = CliRunner()

    def invoke(*args: str, **kwargs) -> Result:
        return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"}, **kwargs)

    return invoke
