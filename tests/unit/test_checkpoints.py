"""Policy exports: rebuilt from weights and JSON only, refused clearly when broken."""

import json

import numpy as np
import pytest
import torch
from policy_exports import fresh_ppo_export

from rl_platform.checkpoints import PolicyExportError, load_policy, read_manifest

EXPERIMENT = {
    "name": "t",
    "env": {"id": "rendezvous", "config": {"num_agents": 3}},
    "algorithm": {"id": "ppo", "shared_policy": True},
    "stop": {"training_iteration": 1},
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint laid out as RLlib writes it, holding one PPO module."""
    return fresh_ppo_export(tmp_path_factory.mktemp("ckpt"), EXPERIMENT)


def test_export_reloads_to_the_same_policy(checkpoint):
    root, module = checkpoint
    loaded = load_policy(root, "shared")
    obs = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (5, 7)), dtype=torch.float32)
    with torch.no_grad():
        expected = module.forward_inference({"obs": obs})["action_dist_inputs"]
        got = loaded.forward_inference({"obs": obs})["action_dist_inputs"]
    torch.testing.assert_close(got, expected)


def test_manifest_maps_agents_and_records_versions(checkpoint):
    manifest = read_manifest(checkpoint[0])
    assert manifest["agents"] == {f"agent_{i}": "shared" for i in range(3)}
    assert {"rl_platform", "ray", "torch"} <= set(manifest["versions"])
    assert manifest["env"]["id"] == "rendezvous"


def edit_manifest(root, tmp_path, change):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root / "policies", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    change(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_untrusted_class_is_refused(checkpoint, tmp_path):
    def evil(m):
        m["modules"]["shared"]["module_class"] = "os.system"

    with pytest.raises(PolicyExportError, match="refusing to import 'os.system'"):
        load_policy(edit_manifest(checkpoint[0], tmp_path, evil), "shared")


def test_incompatible_export_names_both_versions(checkpoint, tmp_path):
    def moved(m):  # an older Ray whose network layout differs from this one's
        m["versions"]["ray"] = "2.99.0"
        m["modules"]["shared"]["model_config"]["fcnet_hiddens"] = [32, 32]

    with pytest.raises(PolicyExportError, match=r"exported with ray 2\.99\.0.*this is ray 2\."):
        load_policy(edit_manifest(checkpoint[0], tmp_path, moved), "shared")


def test_missing_corrupt_and_unknown_are_clear(checkpoint, tmp_path):
    with pytest.raises(PolicyExportError, match="no policy export"):
        load_policy(tmp_path, "shared")
    with pytest.raises(PolicyExportError, match="no module 'agent_9'"):
        load_policy(checkpoint[0], "agent_9")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(PolicyExportError, match="corrupt manifest"):
        load_policy(tmp_path, "shared")


def test_corrupt_weights_are_refused(checkpoint, tmp_path):
    copy = edit_manifest(checkpoint[0], tmp_path, lambda m: None)
    (copy / "shared.pt").write_bytes(b"garbage")
    with pytest.raises(PolicyExportError, match="cannot load module 'shared'"):
        load_policy(copy, "shared")


def test_exported_policy_plays_episodes_on_the_batched_core(checkpoint):
    from rl_platform.evaluation.policy import TrainedPolicy, policy_scores

    policy = TrainedPolicy(checkpoint[0])
    obs = np.zeros((4, 3, 7), dtype=np.float32)
    assert policy.actions(obs).shape == (4, 3, 2)
    scores = policy_scores(checkpoint[0], episodes=5)
    assert scores.shape == (5,) and np.isfinite(scores).all()
