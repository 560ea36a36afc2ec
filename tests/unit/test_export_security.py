"""Policy exports from strangers: loaded as data only, refused with exit 2 when crafted.

The crafted exports carry payloads that would create a file if anything ran them: a
format-1 Box bound that is a pickled object (RLlib's decoder unpickles it), and a
format-2 manifest naming a class off the allow-list whose module creates the file on
import. Every consumer refuses them and the file is never created.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from policy_exports import as_format_1, pickled_npy_payload, run_directory
from typer.testing import CliRunner

from rl_platform.checkpoints import PolicyExportError, load_policy, read_manifest
from rl_platform.cli import app
from rl_platform.evaluation.suite import EvaluationError, resolve_target

EXPERIMENT = {
    "name": "export_security",
    "env": {"id": "rendezvous", "config": {"num_agents": 3, "episode_length": 20}},
    "algorithm": {"id": "ppo", "shared_policy": True},
}
CHECKPOINT = Path("trial") / "checkpoint_000000"
EVIL_MODULE = "rlp_export_payload"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A run directory with one checkpoint of an untrained shared PPO module."""
    torch.manual_seed(0)
    return run_directory(tmp_path_factory.mktemp("pristine") / "run", EXPERIMENT)


@pytest.fixture
def run(pristine, tmp_path) -> Path:
    """A private copy of the run directory, to corrupt."""
    copy = tmp_path / "run"
    shutil.copytree(pristine, copy, symlinks=True)
    summary = json.loads((copy / "summary.json").read_text())
    summary.update(run_dir=str(copy), best_checkpoint=str(copy / CHECKPOINT))
    (copy / "summary.json").write_text(json.dumps(summary))
    return copy


def policies(run: Path) -> Path:
    return run / CHECKPOINT / "policies"


def edit_manifest(run: Path, change) -> None:
    path = policies(run) / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def craft(run: Path, kind: str, creates: Path) -> None:
    """Put a payload that would create `creates` into the run's export."""
    if kind == "format1_pickle":
        as_format_1(policies(run))

        def change(m):
            m["modules"]["shared"]["action_space"]["low"] = pickled_npy_payload(creates)

    else:  # format2_class: a module off the allow-list whose import creates the file
        (run.parent / f"{EVIL_MODULE}.py").write_text(
            f"import pathlib\npathlib.Path({str(creates)!r}).touch()\n"
            "from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (\n"
            "    DefaultPPOTorchRLModule as Module,\n)\n"
        )

        def change(m):
            m["modules"]["shared"]["module_class"] = f"{EVIL_MODULE}.Module"

    edit_manifest(run, change)


def test_the_format_1_payload_is_live(run, tmp_path):
    """RLlib's own decoder runs it: what rl_platform 0.1 did with every export."""
    from ray.rllib.utils.serialization import gym_space_from_dict

    creates = tmp_path / "created_by_rllib"
    craft(run, "format1_pickle", creates)
    manifest = json.loads((policies(run) / "manifest.json").read_text())
    try:
        gym_space_from_dict(manifest["modules"]["shared"]["action_space"])
    except Exception:  # noqa: BLE001, S110 (the payload runs before the space is checked)
        pass
    assert creates.exists()


def test_a_format_1_export_still_loads_and_plays_the_same(run):
    obs = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (5, 7)), dtype=torch.float32)
    before = load_policy(policies(run), "shared").forward_inference({"obs": obs})
    as_format_1(policies(run))
    assert json.loads((policies(run) / "manifest.json").read_text())["format_version"] == 1
    manifest = read_manifest(run / CHECKPOINT)
    assert manifest["format_version"] == 2
    assert manifest["modules"]["shared"]["action_space"] == {
        "type": "Box",
        "dtype": "float32",
        "shape": [2],
        "low": [-1.0, -1.0],
        "high": [1.0, 1.0],
    }
    after = load_policy(policies(run), "shared").forward_inference({"obs": obs})
    torch.testing.assert_close(after["action_dist_inputs"], before["action_dist_inputs"])
    assert resolve_target(run).checkpoint == run / CHECKPOINT


def test_finetuning_a_format_1_export_writes_format_2(run, tmp_path):
    from rl_platform.serving.ab_test import CHAMPION, FeedbackStore
    from rl_platform.serving.finetune import finetune_from_store

    as_format_1(policies(run))
    rng = np.random.default_rng(0)
    agents = ["agent_0", "agent_1", "agent_2"]
    with FeedbackStore(tmp_path / "feedback.sqlite") as store:
        for i in range(6):
            obs = {a: rng.uniform(-1, 1, 7).tolist() for a in agents}
            store.record_decision(f"s{i}", CHAMPION, f"r{i}", obs, {a: [0.1, 0.2] for a in agents})
            store.record_feedback(f"s{i}", float(i))
    result = finetune_from_store(
        run / CHECKPOINT, tmp_path / "feedback.sqlite", tmp_path / "ft", epochs=1, min_transitions=4
    )
    assert json.loads((result.out / "manifest.json").read_text())["format_version"] == 2
    assert read_manifest(result.out)["finetuned_from"]["transitions"] == 6
    load_policy(result.out, "shared")


@pytest.mark.parametrize("kind", ["format1_pickle", "format2_class"])
def test_load_policy_refuses_a_crafted_export(run, tmp_path, monkeypatch, kind):
    creates = tmp_path / "created"
    craft(run, kind, creates)
    monkeypatch.syspath_prepend(str(run.parent))
    expected = "pickle" if kind == "format1_pickle" else f"refusing to import '{EVIL_MODULE}"
    with pytest.raises(PolicyExportError, match=expected):
        load_policy(run / CHECKPOINT, "shared")
    with pytest.raises(EvaluationError, match=expected):
        resolve_target(run)
    assert not creates.exists()
    assert EVIL_MODULE not in sys.modules


def rlp(*args: str, pythonpath: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(pythonpath), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "COLUMNS": "250", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "rl_platform", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def one_paragraph(text: str) -> bool:
    return "Traceback" not in text and "\n\n" not in text.strip()


@pytest.mark.parametrize("kind", ["format1_pickle", "format2_class"])
@pytest.mark.parametrize("command", ["evaluate", "serve", "finetune"])
def test_rlp_refuses_a_crafted_export_with_exit_2(run, tmp_path, kind, command):
    creates = tmp_path / "created"
    craft(run, kind, creates)
    extra = {
        "evaluate": ["--workers", "0", "--episodes", "2", "--report", str(tmp_path / "report")],
        "serve": ["--port", "8391"],
        "finetune": ["--store", str(tmp_path / "feedback.sqlite"), "--output", str(tmp_path)],
    }[command]
    result = rlp(command, str(run), *extra, pythonpath=run.parent)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error:" in result.stderr and one_paragraph(result.stderr), result.stderr
    assert not creates.exists()


# --------------------------------------------------------------------------- run directories


@pytest.fixture
def no_server(monkeypatch):
    """`rlp serve` must refuse in its plan: past it, this fails instead of starting Ray."""
    import rl_platform.serving.app as serving

    def refuse(*args, **kwargs):
        raise AssertionError("the plan accepted a corrupt export")

    monkeypatch.setattr(serving, "build_app", refuse)


def every_command_refuses(run: Path, tmp_path: Path, message: str) -> None:
    """`rlp evaluate`, `serve` and `finetune` of `run` exit 2 with `message`, one paragraph."""
    store, out = str(tmp_path / "feedback.sqlite"), str(tmp_path / "out")
    for args in (
        ["evaluate", str(run), "--workers", "0"],
        ["serve", str(run), "--port", "8391"],
        ["finetune", str(run), "--store", store, "--output", out],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args[0], result.output, result.exception)
        assert message in result.output and one_paragraph(result.output), result.output


@pytest.fixture
def elsewhere(pristine, tmp_path) -> Path:
    """A valid checkpoint outside the run directory."""
    other = tmp_path / "elsewhere" / "checkpoint_000009"
    shutil.copytree(pristine / CHECKPOINT, other)
    return other


def set_best(run: Path, best) -> None:
    summary = json.loads((run / "summary.json").read_text())
    summary["best_checkpoint"] = best
    (run / "summary.json").write_text(json.dumps(summary))


def outside_absolute(run, elsewhere):
    set_best(run, str(elsewhere))


def outside_relative(run, elsewhere):
    set_best(run, os.path.relpath(elsewhere, run))


def outside_through_recorded_run_dir(run, elsewhere):
    set_best(run, f"{run}/../{os.path.relpath(elsewhere, run.parent)}")


def symlinked_checkpoint(run, elsewhere):
    (run / "trial" / "checkpoint_000001").symlink_to(elsewhere, target_is_directory=True)
    set_best(run, str(run / "trial" / "checkpoint_000001"))


def symlinked_newest_checkpoint(run, elsewhere):
    (run / "summary.json").unlink()
    (run / "trial" / "checkpoint_000001").symlink_to(elsewhere, target_is_directory=True)


def symlinked_policies(run, elsewhere):
    shutil.rmtree(policies(run))
    policies(run).symlink_to(elsewhere / "policies", target_is_directory=True)


@pytest.mark.parametrize(
    "lead_outside",
    [
        outside_absolute,
        outside_relative,
        outside_through_recorded_run_dir,
        symlinked_checkpoint,
        symlinked_newest_checkpoint,
        symlinked_policies,
    ],
)
def test_a_run_directory_is_followed_only_inside_itself(
    run, elsewhere, tmp_path, no_server, lead_outside
):
    lead_outside(run, elsewhere)
    with pytest.raises(EvaluationError, match="outside the run directory"):
        resolve_target(run)
    every_command_refuses(run, tmp_path, "outside the run directory")


def test_a_moved_run_directory_reads_its_own_best_checkpoint(run, tmp_path):
    (run / "trial" / "checkpoint_000001").mkdir()  # newer, but not the best; no export
    moved = tmp_path / "moved"
    run.rename(moved)  # summary.json still names the old place
    assert resolve_target(moved).checkpoint == moved / CHECKPOINT


@pytest.mark.parametrize(
    "summary, message",
    [
        (b"[1, 2]", "expected a JSON object"),
        (b'{"best_checkpoint": 7}', "best_checkpoint must be a path string"),
        (b'{"best_checkpoint": ["a"]}', "best_checkpoint must be a path string"),
        (b"\xff\xfe{}", "not UTF-8 JSON"),
        (b'{"best_checkpoint": "', "not UTF-8 JSON"),
    ],
)
def test_a_corrupt_summary_is_a_clear_error(run, tmp_path, no_server, summary, message):
    (run / "summary.json").write_bytes(summary)
    with pytest.raises(EvaluationError, match=message):
        resolve_target(run)
    every_command_refuses(run, tmp_path, message)


# --------------------------------------------------------------------------- corrupt exports


def manifest_bytes(data: bytes):
    return lambda run: (policies(run) / "manifest.json").write_bytes(data)


def manifest_edit(change):
    return lambda run: edit_manifest(run, change)


def weights(data: bytes | None):
    def write(run):
        path = policies(run) / "shared.pt"
        path.unlink() if data is None else path.write_bytes(data)

    return write


def truncated_weights(run):
    path = policies(run) / "shared.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def pickled_weights(run):
    import pickle

    creates = run.parent / "created_by_weights"
    payload = pickle.dumps({"w": pickled_object(creates)})
    (policies(run) / "shared.pt").write_bytes(payload)


def pickled_object(creates: Path):
    from policy_exports import _OpensForWriting

    return _OpensForWriting(creates)


def torch_saved_object(run):
    creates = run.parent / "created_by_weights"
    torch.save({"w": pickled_object(creates)}, policies(run) / "shared.pt")


CORRUPT = {
    "not utf-8": (manifest_bytes(b"\xff\xfe\x00{"), "not UTF-8"),
    "not json": (manifest_bytes(b"{not json"), "not JSON"),
    "infinity": (manifest_bytes(b'{"format_version": Infinity}'), "not JSON"),
    "a list": (manifest_bytes(b"[]"), "expected a JSON object"),
    "no modules": (manifest_edit(lambda m: m.pop("modules")), "field modules is missing"),
    "no versions": (manifest_edit(lambda m: m.pop("versions")), "field versions is missing"),
    "no agents": (manifest_edit(lambda m: m.pop("agents")), "field agents is missing"),
    "no env": (manifest_edit(lambda m: m.pop("env")), "field env is missing"),
    "modules null": (manifest_edit(lambda m: m.update(modules=None)), "field modules"),
    "agents a list": (manifest_edit(lambda m: m.update(agents=["agent_0"])), "field agents"),
    "unknown env": (
        manifest_edit(lambda m: m["env"].update(id="no_such_env")),
        "'no_such_env', which is not registered",
    ),
    "module id a path": (
        manifest_edit(lambda m: m.update(agents={"agent_0": "../../x"})),
        "field agents.agent_0",
    ),
    "format 3": (manifest_edit(lambda m: m.update(format_version=3)), "export format 3"),
    "weights missing": (weights(None), "weights shared.pt are missing"),
    "weights garbage": (weights(b"garbage"), "not a readable weights-only state dict"),
    "weights truncated": (truncated_weights, "not a readable weights-only state dict"),
    "weights a pickle": (pickled_weights, "not a readable weights-only state dict"),
    "weights a torch pickle": (torch_saved_object, "not a readable weights-only state dict"),
}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_a_corrupt_export_is_exit_2_with_one_paragraph(run, tmp_path, no_server, name):
    corrupt, message = CORRUPT[name]
    corrupt(run)
    with pytest.raises(EvaluationError, match=message.replace("(", r"\(")):
        resolve_target(run)
    if name != "unknown env":  # the env matters to evaluation, not to rebuilding a module
        with pytest.raises(PolicyExportError):
            load_policy(run / CHECKPOINT, "shared")
    every_command_refuses(run, tmp_path, message)
    assert not (run.parent / "created_by_weights").exists()
