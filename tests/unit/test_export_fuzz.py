"""Fuzzing every reader of a run directory's policy export with mutations of a real one.

Each example copies a real run directory, mutates its manifest, weights or summary
(fields deleted or retyped, files truncated, removed or replaced by random bytes) and
hands it to ``load_policy``, ``resolve_target``, serving's ``plan`` and ``rlp finetune``:
each must work or raise its own error type (exit 2 for the command), never anything else.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from policy_exports import run_directory
from typer.testing import CliRunner

from rl_platform.checkpoints import PolicyExportError, load_policy
from rl_platform.cli import app
from rl_platform.evaluation.suite import EvaluationError, resolve_target
from rl_platform.policy_manifest import CATALOG_CLASSES, MODULE_CLASSES
from rl_platform.serving.ab_test import CHAMPION, FeedbackStore
from rl_platform.serving.app import ServingError, plan

EXPERIMENT = {
    "name": "export_fuzz",
    "env": {"id": "rendezvous", "config": {"num_agents": 3, "episode_length": 20}},
    "algorithm": {"id": "ppo", "shared_policy": True},
}
AGENTS = ["agent_0", "agent_1", "agent_2"]
CHECKPOINT = Path("trial") / "checkpoint_000000"
FILES = {
    "manifest": CHECKPOINT / "policies" / "manifest.json",
    "weights": CHECKPOINT / "policies" / "shared.pt",
    "summary": Path("summary.json"),
}
WORDS = [
    "inf", "-inf", "nan", "Box", "Discrete", "MultiDiscrete", "MultiBinary", "Dict", "Tuple",
    "float32", "int64", "object", "shared", "agent_0", "../../etc", "..", "/tmp", "os.system",
    "rendezvous", "trading", "pettingzoo:os:system", *MODULE_CLASSES, *CATALOG_CLASSES,
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(WORDS)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A run directory (one checkpoint, its export) and a feedback store for it."""
    root = tmp_path_factory.mktemp("fuzz")
    run = run_directory(root / "run", EXPERIMENT)
    rng = np.random.default_rng(0)
    with FeedbackStore(root / "feedback.sqlite") as store:
        for i in range(8):
            obs = {a: rng.uniform(-1, 1, 7).tolist() for a in AGENTS}
            acts = {a: rng.uniform(-1, 1, 2).tolist() for a in AGENTS}
            store.record_decision(f"s{i}", CHAMPION, f"r{i}", obs, acts)
            store.record_feedback(f"s{i}", float(i))
    return run


def draw_path(data, doc) -> list:
    """A path into a JSON document, chosen by walking down from the root."""
    path, node = [], doc
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        node = node[key]
    return path


def mutate_json(data, path: Path) -> None:
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:  # an earlier mutation broke it already
        mutate_bytes(data, path)
        return
    where = draw_path(data, doc)
    if not where:
        doc = data.draw(JSON)
    else:
        parent = doc
        for key in where[:-1]:
            parent = parent[key]
        how = data.draw(st.sampled_from(["delete", "replace", "nudge"]))
        if how == "delete":
            del parent[where[-1]]
        elif how == "replace":
            parent[where[-1]] = data.draw(JSON)
        else:  # a value of the same type: what keeps a manifest valid but wrong
            parent[where[-1]] = nudge(data, parent[where[-1]])
    path.write_text(json.dumps(doc))


def nudge(data, value):
    """A plausible neighbour of a JSON value (same type)."""
    if isinstance(value, bool) or value is None:
        return data.draw(SCALARS)
    if isinstance(value, int):
        return data.draw(st.integers(-2, 70))
    if isinstance(value, float):
        return data.draw(st.floats(-1e3, 1e3) | st.sampled_from(["inf", "-inf"]))
    if isinstance(value, str):
        return data.draw(st.sampled_from(WORDS) | st.text(max_size=8))
    if isinstance(value, list):
        if value and data.draw(st.booleans()):
            return value[:-1]
        return [*value, value[-1] if value else data.draw(SCALARS)]
    if value and data.draw(st.booleans()):
        return dict(list(value.items())[:-1])
    return {**value, data.draw(st.sampled_from(WORDS)): data.draw(JSON)}


def mutate_bytes(data, path: Path) -> None:
    content = path.read_bytes()
    how = data.draw(st.sampled_from(["truncate", "random", "flip", "delete"]))
    if how == "truncate":
        path.write_bytes(content[: data.draw(st.integers(0, max(len(content) - 1, 0)))])
    elif how == "random":
        path.write_bytes(data.draw(st.binary(max_size=64)))
    elif how == "flip" and content:
        at = data.draw(st.integers(0, len(content) - 1))
        path.write_bytes(content[:at] + bytes([content[at] ^ 0xFF]) + content[at + 1 :])
    elif how == "delete":
        path.unlink()


def mutate(data, run: Path) -> None:
    for _ in range(data.draw(st.integers(1, 2))):
        target = run / FILES[data.draw(st.sampled_from(list(FILES)))]
        if not target.exists():
            continue
        if target.suffix == ".json" and data.draw(st.integers(0, 3)) > 0:
            mutate_json(data, target)
        else:
            mutate_bytes(data, target)


def works_or_raises(name: str, call, error: type[Exception]) -> None:
    """Call; its own error type is fine (recorded for --hypothesis-show-statistics)."""
    try:
        call()
    except error:
        event(f"{name} refused")
    else:
        event(f"{name} worked")


@settings(
    max_examples=int(os.environ.get("RLP_FUZZ_EXAMPLES", "25")),  # more for a long hunt
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_reader_works_or_refuses_a_mutated_run_directory(pristine, data):
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        shutil.copytree(pristine, run)
        mutate(data, run)
        works_or_raises(
            "load_policy", lambda: load_policy(run / CHECKPOINT, "shared"), PolicyExportError
        )
        works_or_raises("resolve_target", lambda: resolve_target(run), EvaluationError)
        works_or_raises("plan", lambda: plan(run), ServingError)
        result = CliRunner().invoke(
            app,
            [
                "finetune", str(run), "--store", str(pristine.parent / "feedback.sqlite"),
                "--output", str(Path(scratch) / "out"), "--epochs", "1", "--min-transitions", "4",
            ],
        )  # fmt: skip
        event(f"rlp finetune exit {result.exit_code}")
        assert result.exit_code in (0, 2), result.output
        assert isinstance(result.exception, (SystemExit, type(None))), repr(result.exception)
