"""Each module's greedy policy as a standalone ONNX or TorchScript file (``rlp export``).

The files need neither rl_platform nor Ray: onnxruntime runs the ``.onnx`` files, plain
``torch.jit.load`` the ``.pt`` ones. Inputs, outputs and the manifest: docs/serving.md.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym

from rl_platform.checkpoints import PolicyExportError, load_policy, read_manifest
from rl_platform.evaluation.target import EvaluationError, locate
from rl_platform.registry import install_hint

__all__ = ["FORMATS", "OPSET", "PortableExportError", "export_portable", "greedy_wrapper"]

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
OPSET = 17
MANIFEST = "manifest.json"
INSTALL = install_hint("export")


class PortableExportError(ValueError):
    """A checkpoint or module that cannot be exported as a standalone file."""


def greedy_wrapper(module: Any):
    """A ``torch.nn.Module`` mapping ``obs`` (and ``action_mask``) to the greedy action.

    Greedy as :class:`~rl_platform.evaluation.policy.TrainedPolicy` plays: the argmax of
    the logits over allowed actions (Discrete), the distribution's deterministic action
    (Box), or the action a deterministic actor outputs (MADDPG).

    Raises:
        PortableExportError: a recurrent module or an action space other than Discrete/Box.
    """
    import torch
    from ray.rllib.core.columns import Columns

    if module.is_stateful():
        raise PortableExportError(
            "recurrent (stateful) modules are not exported yet: their files would need the "
            "hidden state as an extra input and output; serve them with rlp serve instead"
        )
    space = module.observation_space
    key = None
    if isinstance(space, gym.spaces.Dict):
        key = (module.model_config or {}).get("actor_obs_key", "obs")
        if key not in space.spaces:
            key = "obs" if "obs" in space.spaces else "observations"
    masked = key is not None and "action_mask" in space.spaces
    action_space = module.action_space
    if isinstance(action_space, gym.spaces.Discrete):
        kind = "discrete"
    elif isinstance(action_space, gym.spaces.Box):
        kind = "box"
    else:
        raise PortableExportError(f"action space {action_space} is not Discrete or Box")
    dist_cls = module.get_inference_action_dist_cls() if kind == "box" else None

    class GreedyPolicy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = copy.deepcopy(module)  # frozen below; the caller's stays trainable

        def forward(self, obs: torch.Tensor, action_mask: torch.Tensor | None = None):
            if key is None:
                batch = {Columns.OBS: obs}
            else:
                inner = {key: obs}
                if masked and action_mask is not None:
                    inner["action_mask"] = action_mask
                batch = {Columns.OBS: inner}
            logits = self.module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
            if kind == "discrete":
                if action_mask is not None:
                    logits = logits.masked_fill(action_mask == 0, float("-inf"))
                return logits.argmax(-1)
            if dist_cls.required_input_dim(action_space) == logits.shape[-1]:
                return dist_cls.from_logits(logits).to_deterministic().sample()
            return logits[:, : action_space.shape[0]]

    wrapper = GreedyPolicy()
    wrapper.eval()
    wrapper.requires_grad_(False)  # the files' outputs need no torch.no_grad() to read
    wrapper.masked = masked
    wrapper.obs_space = space[key] if key is not None else space
    return wrapper


def _write_onnx(wrapper: Any, example: tuple, path: Path) -> None:
    import torch

    names = ["obs", "action_mask"][: len(example)]
    axes = {name: {0: "batch"} for name in [*names, "action"]}
    with warnings.catch_warnings():  # the legacy (TorchScript-based) exporter warns
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=names,
            output_names=["action"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _write_torchscript(wrapper: Any, example: tuple, path: Path) -> None:
    import torch

    with warnings.catch_warnings():  # tracing warns about Python values it freezes
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    traced.save(str(path))


def _check_dependencies(fmt: str) -> None:
    if fmt != "onnx":
        return
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise PortableExportError(
            f"ONNX export needs onnx and onnxruntime ({err.name} is missing): {INSTALL}"
        ) from None


def export_module(module: Any, fmt: str, path: Path) -> dict[str, Any]:
    """Write one module's greedy policy to ``path``; returns its manifest entry."""
    import torch

    if fmt not in FORMATS:
        raise PortableExportError(f"unknown format {fmt!r}; choose {' or '.join(FORMATS)}")
    _check_dependencies(fmt)
    wrapper = greedy_wrapper(module)
    obs_space = wrapper.obs_space
    obs = torch.zeros((2, *obs_space.shape), dtype=torch.float32)
    example: tuple = (obs,)
    action_space = module.action_space
    if wrapper.masked:
        example = (obs, torch.ones((2, int(action_space.n)), dtype=torch.float32))
    (_write_onnx if fmt == "onnx" else _write_torchscript)(wrapper, example, path)
    inputs = [{"name": "obs", "shape": ["batch", *obs_space.shape], "dtype": "float32"}]
    if wrapper.masked:
        inputs.append(
            {"name": "action_mask", "shape": ["batch", int(action_space.n)], "dtype": "float32"}
        )
    if isinstance(action_space, gym.spaces.Discrete):
        space = {"type": "Discrete", "n": int(action_space.n)}
        output = {"name": "action", "shape": ["batch"], "dtype": "int64"}
    else:
        space = {
            "type": "Box",
            "shape": list(action_space.shape),
            "low": action_space.low.tolist(),
            "high": action_space.high.tolist(),
        }
        output = {"name": "action", "shape": ["batch", *action_space.shape], "dtype": "float32"}
    return {"file": path.name, "inputs": inputs, "outputs": [output], "action_space": space}


def export_portable(
    path: str | Path, fmt: str, output: str | Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """Export every module of a checkpoint (or a run's best one) as ``fmt`` files.

    Writes ``<module_id>.onnx`` or ``<module_id>.pt`` per module and ``manifest.json``
    into ``output`` (default: ``<checkpoint>/portable/<fmt>``). Returns (output, manifest).

    Raises:
        PortableExportError: no checkpoint or export there, a corrupt one, a recurrent or
            hierarchical policy, or onnx/onnxruntime not installed.
    """
    import torch

    if fmt not in FORMATS:
        raise PortableExportError(f"unknown format {fmt!r}; choose {' or '.join(FORMATS)}")
    _check_dependencies(fmt)
    try:
        checkpoint, _ = locate(path)
        manifest = read_manifest(checkpoint)
    except (EvaluationError, PolicyExportError) as err:
        reason = str(err).rstrip(".")
        raise PortableExportError(
            f"{reason}. Is {path} a checkpoint written by rlp train?"
        ) from None
    if manifest.get("hierarchy"):
        raise PortableExportError(
            f"{checkpoint}: a hierarchical run's modules choose strategies rather than act on "
            "the env's observations; they are not exported as standalone policies"
        )
    out = Path(output) if output is not None else checkpoint / "portable" / fmt
    modules: dict[str, Any] = {}
    for module_id in sorted(set(manifest["agents"].values())):
        try:
            module = load_policy(checkpoint, module_id)
            out.mkdir(parents=True, exist_ok=True)
            entry = export_module(module, fmt, out / f"{module_id}{SUFFIX[fmt]}")
        except PolicyExportError as err:
            raise PortableExportError(str(err)) from None
        except OSError as err:
            raise PortableExportError(f"{out}: cannot write the export: {err}") from None
        except PortableExportError as err:
            raise PortableExportError(f"{checkpoint}: module {module_id!r}: {err}") from None
        agents = [a for a, m in manifest["agents"].items() if m == module_id]
        one_hot = _appends_agent_one_hot(manifest, module, agents[0])
        modules[module_id] = {"agents": agents, "obs_appends_agent_one_hot": one_hot, **entry}
    result = {
        "format": fmt,
        "opset": OPSET if fmt == "onnx" else None,
        "source": str(checkpoint),
        "env": manifest["env"],
        "algorithm": manifest["algorithm"],
        "agents": manifest["agents"],
        "versions": {"torch": torch.__version__, **_onnx_versions(fmt)},
        "modules": modules,
    }
    try:
        (out / MANIFEST).write_text(json.dumps(result, indent=2) + "\n")
    except OSError as err:
        raise PortableExportError(f"{out}: cannot write the export: {err}") from None
    return out, result


def _appends_agent_one_hot(manifest: dict[str, Any], module: Any, agent: str) -> bool | None:
    """Whether the module's obs is the agent's local obs + its one-hot index (None: unknown).

    The rule :class:`~rl_platform.evaluation.policy.TrainedPolicy` plays by: a Dict-space
    module whose obs is one entry per agent wider than the env's local observation.
    """
    from rl_platform import registry

    if not isinstance(module.observation_space, gym.spaces.Dict):
        return False
    entry = registry.get_env(manifest["env"]["id"])
    if entry is None:
        return None
    width = greedy_wrapper(module).obs_space.shape
    try:
        env = entry.load()({**manifest["env"]["config"], **entry.bound_config})
        local = env.observation_spaces[agent]
        if isinstance(local, gym.spaces.Dict):  # an env with action masks
            local = local["obs"] if "obs" in local.spaces else local["observations"]
        return width[0] - local.shape[0] == len(manifest["agents"])
    except Exception:  # noqa: BLE001 (an env that cannot be built here: say unknown)
        return None


def _onnx_versions(fmt: str) -> dict[str, str]:
    if fmt != "onnx":
        return {}
    import onnx

    return {"onnx": onnx.__version__}
