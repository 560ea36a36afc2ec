"""Validating an experiment imports neither torch nor Ray: a typo is refused at once.

Each check runs in a fresh interpreter, so what it imported is all that is in
``sys.modules``.
"""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BAD_YAML = """\
name: typo
env: {id: rendezvous}
algorithm: {id: mappo, hyperparams: {lrr: 0.1}}
epochs: 3
"""

NOTHING_HEAVY = """
heavy = sorted(m for m in ("torch", "ray") if m in sys.modules)
assert not heavy, f"imported {heavy}"
"""


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    code = textwrap.dedent(code) + NOTHING_HEAVY
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_a_typo_is_refused_without_torch_or_ray(tmp_path):
    (tmp_path / "bad.yaml").write_text(BAD_YAML)
    proc = run_python(
        """
        import sys
        from rl_platform.config import ConfigError, load_experiment
        try:
            load_experiment("bad.yaml")
        except ConfigError as err:
            message = str(err)
        else:
            raise SystemExit("no ConfigError")
        assert "algorithm.hyperparams.lrr: unknown key" in message, message
        assert "lr," in message and "epochs: unknown key" in message, message
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_json_schema_needs_neither_torch_nor_ray(tmp_path):
    proc = run_python(
        """
        import sys
        from rl_platform.config import experiment_json_schema
        schema = experiment_json_schema()
        assert "lr" in schema["$defs"]["MAPPOParams"]["properties"]
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr


def test_rlp_train_refuses_a_bad_yaml_fast_and_without_torch_or_ray(tmp_path):
    (tmp_path / "bad.yaml").write_text(BAD_YAML)
    proc = run_python(
        """
        import sys
        from typer.testing import CliRunner
        from rl_platform.cli import app
        result = CliRunner().invoke(app, ["train", "bad.yaml"])
        assert result.exit_code == 2, (result.exit_code, result.output)
        assert "algorithm.hyperparams.lrr" in result.output, result.output
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr

    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rl_platform", "train", "bad.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert "epochs: unknown key" in proc.stderr
    # About a second on an idle machine (torch and Ray alone take several); the bound
    # leaves room for a busy CI runner.
    assert elapsed < 10, f"rlp train took {elapsed:.1f} s to refuse a bad file"
