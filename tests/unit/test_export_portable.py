"""rlp export: ONNX and TorchScript files play the module's own greedy actions, no Ray."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from policy_exports import fresh_ppo_export
from test_maddpg import actor
from test_mappo_module import build
from test_masks import masked_module
from test_masks_value_based import q_module

from rl_platform.evaluation.policy import TrainedPolicy
from rl_platform.serving.portable import PortableExportError, export_module

ROWS = 1000
EXPERIMENT = {
    "name": "t",
    "env": {"id": "rendezvous", "config": {"num_agents": 3}},
    "algorithm": {"id": "ppo", "shared_policy": True},
    "stop": {"training_iteration": 1},
}


def perturbed(module, seed=0):
    """The module with its weights moved off their initialisation (no near-ties)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    return module.eval()


def greedy(module, obs, masks=None):
    """The module's own greedy actions, as evaluation and serving play them."""
    policy = TrainedPolicy.from_modules({"m": module}, {"a": "m"})
    return policy.actions(obs[:, None], None if masks is None else masks[:, None])[:, 0]


def run_onnx(path, obs, masks=None):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"obs": obs} if masks is None else {"obs": obs, "action_mask": masks}
    return session.run(["action"], feed)[0]


def run_torchscript(path, obs, masks=None):
    loaded = torch.jit.load(str(path))
    args = (torch.as_tensor(obs),) + (() if masks is None else (torch.as_tensor(masks),))
    return loaded(*args).numpy()  # no torch.no_grad() needed


RUNNERS = {"onnx": run_onnx, "torchscript": run_torchscript}


def observations(module, seed=1):
    space = module.observation_space
    local = space["obs"] if isinstance(space, gym.spaces.Dict) else space
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (ROWS, *local.shape)).astype(np.float32)


def some_masks(n, seed=2):
    """0/1 masks, each row allowing at least one action; the best action often masked."""
    rng = np.random.default_rng(seed)
    masks = (rng.random((ROWS, n)) < 0.5).astype(np.float32)
    masks[np.arange(ROWS), rng.integers(0, n, ROWS)] = 1.0
    return masks


MODULES = {
    "mappo discrete": lambda: build(gym.spaces.Discrete(3)),
    "mappo box": lambda: build(gym.spaces.Box(-1, 1, (2,), np.float32)),
    "maddpg box": lambda: actor(gym.spaces.Box(-2, 2, (2,), np.float32)),
    "vdn": lambda: q_module("vdn"),
    "qmix": lambda: q_module("qmix"),
}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", list(MODULES))
def test_export_agrees_with_the_modules_greedy_actions(tmp_path, fmt, name):
    module = perturbed(MODULES[name]())
    obs = observations(module)
    masked = "action_mask" in getattr(module.observation_space, "spaces", {})
    masks = some_masks(module.action_space.n) if masked else None
    trainable = [p.requires_grad for p in module.parameters()]
    entry = export_module(module, fmt, tmp_path / f"m.{fmt}")
    assert [p.requires_grad for p in module.parameters()] == trainable  # left as it was
    got = RUNNERS[fmt](tmp_path / entry["file"], obs, masks)
    expected = greedy(module, obs, masks)
    assert got.shape == expected.shape
    if isinstance(module.action_space, gym.spaces.Discrete):
        assert (got == expected).all()
        assert len(np.unique(got)) > 1  # not a constant policy
    else:
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert module.action_space.contains(got[0])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_masked_actions_are_never_chosen(tmp_path, fmt):
    module = perturbed(masked_module())
    obs = observations(module)
    masks = some_masks(5)
    entry = export_module(module, fmt, tmp_path / f"m.{fmt}")
    assert [i["name"] for i in entry["inputs"]] == ["obs", "action_mask"]
    got = RUNNERS[fmt](tmp_path / entry["file"], obs, masks)
    assert (masks[np.arange(ROWS), got] == 1).all()
    assert (got == greedy(module, obs, masks)).all()
    unmasked = RUNNERS[fmt](tmp_path / entry["file"], obs, np.ones_like(masks))
    assert (unmasked != got).any()  # the masks changed some choices


def test_recurrent_modules_are_refused(tmp_path):
    module = q_module("qmix", recurrent=True)
    with pytest.raises(PortableExportError, match="recurrent"):
        export_module(module, "onnx", tmp_path / "m.onnx")


@pytest.fixture(scope="module", params=[False, True], ids=["box", "discrete"])
def checkpoint(request, tmp_path_factory):
    """A checkpoint holding one fresh shared PPO module (RLlib's default module)."""
    experiment = {**EXPERIMENT, "env": {"id": "rendezvous", "config": {"num_agents": 3}}}
    experiment["env"]["config"]["discrete"] = request.param
    root, module = fresh_ppo_export(tmp_path_factory.mktemp("ckpt"), experiment)
    module = perturbed(module)  # trained-looking weights, written into the export
    torch.save(module.state_dict(), root / "policies" / "shared.pt")
    return root, module


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_cli_exports_every_module_with_a_manifest(cli, checkpoint, tmp_path, fmt):
    root, module = checkpoint
    result = cli("export", str(root), "--format", fmt, "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entry = manifest["modules"]["shared"]
    assert entry["agents"] == ["agent_0", "agent_1", "agent_2"]
    assert manifest["format"] == fmt and entry["inputs"][0]["name"] == "obs"
    assert entry["obs_appends_agent_one_hot"] is False
    obs = observations(module)
    got = RUNNERS[fmt](tmp_path / "out" / entry["file"], obs)
    expected = greedy(module, obs)
    if isinstance(module.action_space, gym.spaces.Discrete):
        assert (got == expected).all()
    else:
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_cli_refuses_a_missing_or_corrupt_checkpoint(cli, checkpoint, tmp_path):
    missing = cli("export", str(tmp_path / "nope"), "--format", "onnx")
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert "nope" in missing.output
    corrupt = tmp_path / "corrupt" / "policies"
    corrupt.mkdir(parents=True)
    (corrupt / "manifest.json").write_text("{not json")
    result = cli("export", str(corrupt.parent), "--format", "torchscript")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "manifest" in result.output
    bad_format = cli("export", str(checkpoint[0]), "--format", "tflite")
    assert bad_format.exit_code == 2


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(PortableExportError, match=r"pip install -e '\.\[export\]'"):
        export_module(build(gym.spaces.Discrete(3)), "onnx", tmp_path / "m.onnx")


def test_the_manifest_says_when_a_shared_module_takes_the_agents_one_hot(cli, tmp_path):
    from rl_platform.algorithms.mappo import ActorCriticModule
    from rl_platform.checkpoints import export_policies
    from rl_platform.config import load_experiment

    experiment = {**EXPERIMENT, "algorithm": {"id": "mappo", "shared_policy": True}}
    resolved = load_experiment(experiment).model_dump(mode="json")
    local = 7  # rendezvous' observation with 3 agents; + their one-hot index
    space = gym.spaces.Dict(
        {
            "obs": gym.spaces.Box(-np.inf, np.inf, (local + 3,), np.float32),
            "state": gym.spaces.Box(-np.inf, np.inf, (9,), np.float32),
        }
    )
    module = ActorCriticModule(
        observation_space=space,
        action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
        model_config={"actor_hiddens": [8], "critic_hiddens": [8]},
    )
    module.save_to_path(str(tmp_path / "learner_group" / "learner" / "rl_module" / "shared"))
    export_policies(tmp_path, resolved)
    result = cli("export", str(tmp_path), "--format", "torchscript")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "portable" / "torchscript" / "manifest.json").read_text())
    entry = manifest["modules"]["shared"]
    assert entry["obs_appends_agent_one_hot"] is True
    assert entry["inputs"][0]["shape"] == ["batch", local + 3]


def test_the_files_load_in_a_process_without_rl_platform_or_ray(tmp_path):
    import subprocess
    import sys

    module = perturbed(masked_module())
    obs, masks = observations(module)[:5], some_masks(5)[:5]
    for fmt in ("onnx", "torchscript"):
        export_module(module, fmt, tmp_path / f"m.{fmt}")
    np.save(tmp_path / "obs.npy", obs)
    np.save(tmp_path / "masks.npy", masks)
    script = f"""
import sys
import numpy as np
import onnxruntime as ort
import torch
obs, masks = np.load("{tmp_path}/obs.npy"), np.load("{tmp_path}/masks.npy")
a = ort.InferenceSession("{tmp_path}/m.onnx").run(["action"], {{"obs": obs, "action_mask": masks}})
b = torch.jit.load("{tmp_path}/m.torchscript")(torch.as_tensor(obs), torch.as_tensor(masks))
assert (a[0] == b.numpy()).all()
loaded = [m for m in sys.modules if m.split(".")[0] in ("ray", "rl_platform")]
assert not loaded, loaded
print(a[0].tolist())
"""
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(greedy(module, obs, masks).tolist())


def test_cli_refuses_an_output_it_cannot_write(cli, checkpoint, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = cli("export", str(checkpoint[0]), "--format", "torchscript", "--output", str(blocker))
    assert result.exit_code == 2 and "cannot write" in result.output
