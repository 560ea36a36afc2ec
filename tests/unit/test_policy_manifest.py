"""The manifest schema alone (no torch, no Ray): spaces as plain JSON, strict refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from rl_platform.policy_manifest import (
    MODULE_CLASSES,
    PolicyExportError,
    parse_manifest,
    space_from_json,
    space_to_json,
)

SPACES = [
    gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
    gym.spaces.Box(np.array([-1.0, 0.0]), np.array([1.0, np.inf]), dtype=np.float64),
    gym.spaces.Box(0, 255, (2, 2), np.uint8),
    gym.spaces.Box(np.iinfo(np.int64).min, np.iinfo(np.int64).max, (2,), np.int64),
    gym.spaces.Box(0.0, 1.0, (), np.float32),
    gym.spaces.Discrete(5, start=-2),
    gym.spaces.MultiDiscrete([[2, 3], [4, 5]]),
    gym.spaces.MultiBinary(4),
    gym.spaces.MultiBinary([2, 3]),
    gym.spaces.Dict(
        {
            "obs": gym.spaces.Box(-1, 1, (2,)),
            "t": gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(0, 1, ()))),
        }
    ),
]


@pytest.mark.parametrize("space", SPACES, ids=str)
def test_spaces_round_trip_through_strict_json(space):
    text = json.dumps(space_to_json(space), allow_nan=False)
    assert space_from_json(json.loads(text)) == space


def test_infinities_are_strings_and_integers_exact():
    low, high = np.array([-np.inf, 0.5]), np.array([1.0, np.inf])
    box = space_to_json(gym.spaces.Box(low, high, dtype=np.float64))
    assert box["low"] == ["-inf", 0.5] and box["high"] == [1.0, "inf"]
    ints = space_to_json(gym.spaces.Box(np.array([-3, 7]), np.array([2**40, 9]), dtype=np.int64))
    assert ints["low"] == [-3, 7] and ints["high"] == [2**40, 9]


@pytest.mark.parametrize(
    "space, message",
    [
        ({"type": "Box", "dtype": "float32", "shape": [2], "low": [0, "x"], "high": [1, 1]},
         "field low.1: a bound is a number"),
        ({"type": "Box", "dtype": "object", "shape": [1], "low": [0], "high": [1]},
         "field dtype"),
        ({"type": "Box", "dtype": "float32", "shape": [2], "low": [0], "high": [1, 1]},
         "need 2 numbers each"),
        ({"type": "Box", "dtype": "float32", "shape": [1], "low": [2], "high": [1]},
         "low is above high"),
        ({"type": "Box", "dtype": "float32", "shape": [10**8], "low": [], "high": []},
         "too large"),
        ({"type": "Box", "dtype": "int8", "shape": [1], "low": [-1000], "high": [1]},
         "range of int8"),
        ({"type": "Discrete", "n": True}, "field n"),
        ({"type": "Discrete", "n": 0}, "field n"),
        ({"type": "Simplex", "shape": [3]}, "does not match any of the expected tags"),
        ({"type": "Dict", "spaces": {"a": {"type": "Discrete", "n": "3"}}}, "field spaces.a.n"),
        ({"type": "MultiBinary", "shape": []}, "field shape"),
    ],
)  # fmt: skip
def test_bad_spaces_are_refused_with_the_field_named(space, message):
    with pytest.raises(PolicyExportError, match=message):
        space_from_json(space)


def manifest(**changes) -> dict:
    box = space_to_json(gym.spaces.Box(-1.0, 1.0, (3,), np.float32))
    base = {
        "format_version": 2,
        "versions": {"rl_platform": "0.1.0", "ray": "2.60.0", "torch": "2.13.0"},
        "env": {"id": "rendezvous", "config": {"num_agents": 3}},
        "algorithm": "ppo",
        "agents": {"agent_0": "shared"},
        "modules": {
            "shared": {
                "module_class": MODULE_CLASSES[0],
                "catalog_class": None,
                "observation_space": box,
                "action_space": space_to_json(gym.spaces.Discrete(3)),
                "model_config": {"fcnet_hiddens": [16, 16]},
            }
        },
    }
    return {**base, **changes}


def deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def parse(data) -> dict:
    text = data if isinstance(data, bytes) else json.dumps(data).encode()
    return parse_manifest(text, "m.json")


def test_a_valid_manifest_comes_back_as_plain_data():
    parsed = parse(manifest())
    assert parsed["modules"]["shared"]["model_config"] == {"fcnet_hiddens": [16, 16]}
    assert parsed["hierarchy"] is None and parsed["agents"] == {"agent_0": "shared"}


def with_module(**changes) -> dict:
    m = manifest()
    m["modules"]["shared"].update(changes)
    return m


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xff{", "not UTF-8"),
        (b"{", "not JSON"),
        (b'{"format_version": NaN}', "NaN is not JSON"),
        (b"[]", "expected a JSON object, got a list"),
        (b"null", "expected a JSON object, got null"),
        (manifest(format_version="2"), "export format '2'"),
        (manifest(format_version=True), "export format True"),
        ({k: v for k, v in manifest().items() if k != "modules"}, "field modules is missing"),
        (manifest(modules=None), "field modules: Input should be a valid dictionary"),
        (manifest(modules={}), "field modules"),
        (manifest(agents=["agent_0"]), "field agents: Input should be a valid dictionary"),
        (manifest(agents={"agent_0": "other"}), "'other' that 'modules' does not hold"),
        (manifest(agents={"agent_0": "/etc/passwd"}), "a module id names its weights file"),
        (manifest(env={"id": 3, "config": {}}), "field env.id"),
        (manifest(versions={"ray": 2}), "field versions.ray"),
        (manifest(extra=1), "field extra: Extra inputs are not permitted"),
        (with_module(module_class="os.system"), "refusing to import 'os.system'"),
        (with_module(module_class="ray.rllib.utils.serialization.gym_space_from_dict"),
         "refusing to import"),
        (with_module(catalog_class="rl_platform.cli.app"), "refusing to import"),
        (with_module(model_config=[]), "model_config"),
        (with_module(model_config={"fcnet_activation": "Transformer"}),
         "fcnet_activation 'Transformer' is not one of"),
        (with_module(model_config={"fcnet_kernel_initializer": "os.system"}),
         "fcnet_kernel_initializer 'os.system' is not one of"),
        (with_module(observation_space={"space": "box"}), "observation_space"),
        (b"[" * 100 + b"]" * 100, "expected a JSON object"),
        (manifest(hierarchy={"a": deep(40)}), "nested deeper"),
    ],
)  # fmt: skip
def test_bad_manifests_are_one_clear_sentence(data, message):
    with pytest.raises(PolicyExportError, match=message.replace("(", r"\(")) as err:
        parse(data)
    assert "\n" not in str(err.value) and str(err.value).startswith("m.json")


def test_the_schema_imports_neither_torch_nor_ray():
    code = (
        "import sys, rl_platform.policy_manifest, rl_platform.checkpoints;"
        "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
