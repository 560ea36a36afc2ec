"""Trust: env ids import only allow-listed modules; pickled state loads only from own dirs."""

import os
import pickle
import stat
import sys
import uuid
from pathlib import Path

import pytest

from rl_platform import registry, trust
from rl_platform.config import ConfigError, load_experiment
from rl_platform.trust import UntrustedModuleError, UntrustedStateError, check_own_state

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"
IS_ROOT = hasattr(os, "getuid") and os.getuid() == 0
FOREIGN_GID = 4242  # a group no one is in


def one_paragraph(proc) -> str:
    """The error message of an `rlp` run (subprocess or CliRunner): one paragraph."""
    text = proc.stderr.strip()
    assert "Traceback" not in proc.stderr + proc.stdout
    assert text.startswith("error:") and "\n" not in text, text
    return text


@pytest.fixture(autouse=True)
def no_trusted_modules(monkeypatch):
    """Each test starts with no user-trusted modules (and gets its setting undone)."""
    monkeypatch.setenv(trust.TRUSTED_MODULES_ENV, "")


# --------------------------------------------------------------------------- env modules


@pytest.fixture
def payload(tmp_path, monkeypatch):
    """An importable module that, if ever imported, creates a marker file: (name, marker)."""
    name = f"rlp_payload_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "pwned"
    (tmp_path / f"{name}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('pwned')\n\n"
        "def env(**kwargs):\n    return None\n\nparallel_env = env\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    assert name not in sys.modules, "the payload module was imported"
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize(
    ("env_id", "expected"),
    [
        (
            "pettingzoo:mpe2.simple_spread_v3:parallel_env",
            ("mpe2.simple_spread_v3", "parallel_env"),
        ),
        ("pettingzoo:pettingzoo.classic.rps_v2:env", ("pettingzoo.classic.rps_v2", "env")),
        ("pettingzoo:pettingzoo.butterfly.pistonball_v6:raw_env", None),
        ("pettingzoo:vmas.simple:env", None),
    ],
)
def test_family_modules_and_factories_are_allowed(env_id, expected):
    found = trust.check_env_factory(env_id)
    assert expected is None or found == expected


@pytest.mark.parametrize(
    ("env_id", "fragment"),
    [
        ("pettingzoo:os:system", "module 'os' is not allowed"),
        ("pettingzoo:subprocess:run", "module 'subprocess' is not allowed"),
        ("pettingzoo:pettingzoo_evil.envs:env", "module 'pettingzoo_evil.envs' is not allowed"),
        ("pettingzoo:mpe2x:env", "module 'mpe2x' is not allowed"),
        ("pettingzoo:mpe2.simple_spread_v3:make_env", "not 'make_env'"),
        ("pettingzoo:pettingzoo.utils:env.__globals__", "no attribute paths"),
        ("pettingzoo:.relative:env", "not of the form"),
        ("pettingzoo:mpe2..x:env", "not of the form"),
        ("pettingzoo:mpe2.simple_spread_v3", "not of the form"),
        ("pettingzoo::env", "not of the form"),
    ],
)
def test_other_modules_and_factories_are_refused(env_id, fragment):
    with pytest.raises(UntrustedModuleError, match=fragment.replace(".", r"\.")) as info:
        trust.check_env_factory(env_id)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)  # from Ray workers
    with pytest.raises(UntrustedModuleError):
        registry.get_env(env_id)


def test_a_payload_named_in_a_yaml_is_refused_and_never_imported(make_experiment, payload):
    name, _ = payload
    env_id = f"pettingzoo:{name}:env"
    path = make_experiment(env_id, env_config={"command": "x"})
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    message = str(info.value)
    for fragment in (str(path), f"env.id = {env_id!r}", f"module {name!r} is not allowed"):
        assert fragment in message
    assert "pettingzoo.*, mpe2.*, vmas.*" in message and "RLP_TRUSTED_MODULES" in message
    from rl_platform.envs.pettingzoo import PettingZooEnv, load_factory

    with pytest.raises(UntrustedModuleError):
        load_factory(env_id)
    with pytest.raises(ValueError, match="not allowed"):
        PettingZooEnv({"source": env_id})


def test_a_payload_smuggled_into_env_config_is_never_imported(make_experiment, payload):
    name, _ = payload
    allowed = "pettingzoo:mpe2.simple_spread_v3:parallel_env"
    config = load_experiment(
        make_experiment(allowed, env_config={"source": f"pettingzoo:{name}:env"})
    )
    assert "source" not in config.env.config


def test_modules_trusted_by_the_environment_variable_load(monkeypatch, experiment_dict):
    env_id = "pettingzoo:test_env_pettingzoo:shrinking"
    raw = experiment_dict(env_id)
    with pytest.raises(ConfigError, match="not allowed"):
        load_experiment(raw)
    monkeypatch.setenv(trust.TRUSTED_MODULES_ENV, "test_env")  # a prefix of the name only
    with pytest.raises(ConfigError, match="not allowed"):
        load_experiment(raw)
    monkeypatch.setenv(trust.TRUSTED_MODULES_ENV, " other , test_env_pettingzoo")
    assert load_experiment(raw).env.id == env_id
    with pytest.raises(ConfigError, match="no attribute paths"):
        load_experiment({**raw, "env": {"id": env_id + ".__call__"}})


def test_trust_modules_adds_to_the_environment_for_ray_workers():
    assert trust.trust_modules(["my_envs", "other.pkg"]) == ("my_envs", "other.pkg")
    assert trust.trust_modules(["my_envs"]) == ("my_envs", "other.pkg")
    assert os.environ[trust.TRUSTED_MODULES_ENV] == "my_envs,other.pkg"
    assert trust.check_env_factory("pettingzoo:my_envs.grid:make") == ("my_envs.grid", "make")
    with pytest.raises(UntrustedModuleError, match="not a Python module name"):
        trust.trust_modules(["my-envs"])


def test_a_trusted_factory_must_build_a_pettingzoo_env(tmp_path, monkeypatch, make_experiment):
    name = f"rlp_not_env_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def make(**kwargs):\n    return {'agents': []}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(trust.TRUSTED_MODULES_ENV, name)
    with pytest.raises(ConfigError, match="built a dict, not a PettingZoo env"):
        load_experiment(make_experiment(f"pettingzoo:{name}:make"))


def test_cli_refuses_a_payload_yaml_with_exit_2_before_importing(
    rlp, cli, tmp_path, make_experiment, payload
):
    name, marker = payload
    path = make_experiment(f"pettingzoo:{name}:env")
    out = tmp_path / "runs"
    # cwd and PYTHONPATH both hold the payload: refused although importable
    extra = {"PYTHONPATH": str(tmp_path)}
    proc = rlp("train", str(path), "--output", str(out), cwd=tmp_path, env=extra)
    assert proc.returncode == 2, proc.stderr
    text = one_paragraph(proc)
    assert str(path) in text and "env.id" in text and "not allowed" in text
    assert not out.exists() and not marker.exists()
    proc = rlp("envs", "check", f"pettingzoo:{name}:env", cwd=tmp_path, env=extra)
    assert proc.returncode == 2, proc.stderr
    assert "not allowed" in one_paragraph(proc) and not marker.exists()
    result = cli("train", path, "--trust-module", "bad-name")
    assert result.exit_code == 2 and "not a Python module name" in one_paragraph(result)


def test_cli_trust_module_lets_envs_check_load_a_user_env(cli, tmp_path, monkeypatch):
    name = f"rlp_user_env_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from pettingzoo.classic import rps_v2\n\n"
        "def make(**kwargs):\n    return rps_v2.parallel_env(**kwargs)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = cli("envs", "check", f"pettingzoo:{name}:make")
    assert result.exit_code == 2 and "--trust-module" in one_paragraph(result)
    assert name not in sys.modules
    result = cli("envs", "check", f"pettingzoo:{name}:make", "--trust-module", name)
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.stdout


def test_submit_passes_trusted_modules_on_to_the_job(cli, tmp_path, monkeypatch, make_experiment):
    from rl_platform import cluster

    jobs = []

    class FakeJobClient:
        def submit_job(self, **job):
            jobs.append(job)
            return job["submission_id"]

        def get_address(self):
            return "http://127.0.0.1:8265"

    monkeypatch.setattr(cluster, "job_client", lambda address=None: FakeJobClient())
    path = make_experiment("pettingzoo:test_env_pettingzoo:shrinking")
    args = ["submit", path, "--storage", tmp_path / "runs"]
    result = cli(*args)
    assert result.exit_code == 2 and "--trust-module" in result.output and not jobs
    result = cli(*args, "--trust-module", "test_env_pettingzoo")
    assert result.exit_code == 0, result.output
    assert jobs[0]["runtime_env"]["env_vars"] == {trust.TRUSTED_MODULES_ENV: "test_env_pettingzoo"}


# --------------------------------------------------------------------------- pickled state


class Payload:
    """Unpickling this creates `marker`: what a planted pickle could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def own_state(folder: Path, marker: Path) -> Path:
    """A directory of pickled state as a run leaves it (mode 755/644), one pickle a payload."""
    (folder / "checkpoint_000000").mkdir(parents=True)
    (folder / "checkpoint_000000" / "algorithm_state.pkl").write_bytes(pickle.dumps({"x": 1}))
    (folder / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def test_own_state_passes(tmp_path):
    check_own_state(own_state(tmp_path / "run", tmp_path / "pwned"))
    check_own_state(tmp_path / "absent")  # callers report missing directories themselves


@pytest.mark.parametrize(
    ("relative", "mode"),
    [
        (".", 0o757),
        ("tuner.pkl", 0o646),
        ("checkpoint_000000", 0o777),
        ("checkpoint_000000/algorithm_state.pkl", 0o666),
    ],
)
def test_state_others_can_write_is_refused_unless_trusted(tmp_path, relative, mode):
    run = own_state(tmp_path / "run", tmp_path / "pwned")
    (run / relative).chmod(mode)
    with pytest.raises(UntrustedStateError) as info:
        check_own_state(run)
    message = str(info.value)
    assert "writable by others" in message and "--trust" in message and str(run) in message
    check_own_state(run, trust=True)


@pytest.mark.skipif(not IS_ROOT, reason="giving a file another group needs root")
@pytest.mark.parametrize("relative", [".", "tuner.pkl"])
def test_state_a_group_can_write_is_refused(tmp_path, relative):
    run = own_state(tmp_path / "run", tmp_path / "pwned")
    os.chown(run / relative, -1, FOREIGN_GID)
    (run / relative).chmod((run / relative).stat().st_mode | stat.S_IWGRP)
    with pytest.raises(UntrustedStateError, match="writable by others"):
        check_own_state(run)


def test_state_writable_by_the_users_private_group_passes(tmp_path):
    import grp
    import pwd

    me = pwd.getpwuid(os.getuid())
    sharing = [p.pw_name for p in pwd.getpwall() if p.pw_gid == me.pw_gid and p.pw_uid != me.pw_uid]
    if sharing or set(grp.getgrgid(me.pw_gid).gr_mem) - {me.pw_name}:
        pytest.skip("this user's group is shared (no user private group, umask 002 setups)")
    run = own_state(tmp_path / "run", tmp_path / "pwned")
    os.chown(run, -1, me.pw_gid)
    run.chmod(0o775)
    check_own_state(run)


def test_state_of_another_owner_is_refused(tmp_path, monkeypatch):
    run = own_state(tmp_path / "run", tmp_path / "pwned")
    owner = run.stat().st_uid
    monkeypatch.setattr(os, "getuid", lambda: owner + 12345)
    with pytest.raises(UntrustedStateError, match=f"belongs to uid {owner}, not to you"):
        check_own_state(run)


def test_a_parent_others_can_write_is_refused_unless_sticky(tmp_path):
    shared = tmp_path / "shared"
    run = own_state(shared / "run", tmp_path / "pwned")
    shared.chmod(0o777)
    with pytest.raises(UntrustedStateError, match="its parent .*shared is writable by others"):
        check_own_state(run)
    shared.chmod(0o1777)  # as /tmp: others cannot replace what is ours
    check_own_state(run)


def test_a_symlink_to_state_others_can_write_is_refused(tmp_path):
    run = own_state(tmp_path / "run", tmp_path / "pwned")
    elsewhere = tmp_path / "elsewhere.pkl"
    elsewhere.write_bytes(b"")
    elsewhere.chmod(0o666)
    (run / "linked.pkl").symlink_to(elsewhere)
    with pytest.raises(UntrustedStateError, match="elsewhere.pkl|linked.pkl"):
        check_own_state(run)


def test_load_algorithm_refuses_before_unpickling(tmp_path):
    from rl_platform.checkpoints import load_algorithm

    marker = tmp_path / "pwned"
    checkpoint = own_state(tmp_path / "checkpoint", marker)
    checkpoint.chmod(0o757)
    with pytest.raises(UntrustedStateError):
        load_algorithm(checkpoint)
    assert not marker.exists()


def fake_run(folder: Path, config_file: str, marker: Path, sweep: bool = False) -> Path:
    """A run (or sweep) directory as Tune leaves it, whose tuner.pkl is a payload."""
    own_state(folder, marker)
    raw = load_experiment(QUICKSTART).to_yaml()
    (folder / config_file).write_text(raw)
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def make_group_writable(folder: Path) -> None:
    """Group-writable for a group that is not the user's own (others-writable without root)."""
    if IS_ROOT:
        os.chown(folder, -1, FOREIGN_GID)
        folder.chmod(0o775)
    else:
        folder.chmod(0o757)


def test_train_and_tune_resume_refuse_state_others_can_write(tmp_path):
    import ray

    from rl_platform.training import train
    from rl_platform.tuning import tune

    marker = tmp_path / "pwned"
    run = fake_run(tmp_path / "run", "config.yaml", marker)
    sweep = fake_run(tmp_path / "sweep", "sweep.yaml", marker)
    make_group_writable(run)
    make_group_writable(sweep)
    with pytest.raises(UntrustedStateError, match="--trust"):
        train(None, resume=run)
    with pytest.raises(UntrustedStateError, match="--trust"):
        tune(resume=sweep)
    assert not marker.exists() and not ray.is_initialized()


@pytest.mark.parametrize(
    ("command", "config_file"), [("train", "config.yaml"), ("tune", "sweep.yaml")]
)
def test_cli_resume_of_a_group_writable_dir_exits_2(cli, tmp_path, command, config_file):
    marker = tmp_path / "pwned"
    run = fake_run(tmp_path / "run", config_file, marker)
    make_group_writable(run)
    result = cli(command, "--resume", run)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback: a clean exit
    text = one_paragraph(result)
    assert str(run) in text and "writable by others" in text and "--trust" in text
    assert not marker.exists()


@pytest.mark.parametrize("command", ["train", "tune"])
def test_help_says_resume_loads_pickles_and_names_the_trust_options(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "unpickles" in text and "--trust " in text and "--trust-module" in text


def test_cli_envs_check_refuses_a_boolean_number_in_one_paragraph(cli):
    result = cli("envs", "check", "rendezvous", "--set", "num_agents=true")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "env 'rendezvous': invalid config: num_agents = True: expected a number" in text
