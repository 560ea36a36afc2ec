"""Start a run from the module weights of a policy export (the experiment's ``initial_policies``).

The export (:mod:`rl_platform.checkpoints`: ``policies/<module_id>.pt`` state dicts) is
read with ``torch.load(weights_only=True)`` and its manifest as data
(:func:`~rl_platform.checkpoints.read_manifest`), so nothing is unpickled. When the algorithm
is built, the callback of :func:`callback_class` puts each module's weights into the learner
and pushes them to every env runner before the first iteration. A resumed run then
loads its own checkpoint over them, as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rl_platform.algorithms.common import sync_env_runner_weights
from rl_platform.checkpoints import PolicyExportError, export_dir_of, read_manifest
from rl_platform.checkpoints import load_weights as module_weights
from rl_platform.registry import Feature


def check_initial_policies(path: str | Path, env_id: str) -> None:
    """Raise ValueError unless `path` holds a policy export trained on env `env_id`."""
    try:
        manifest = read_manifest(export_dir_of(path))
    except PolicyExportError as err:
        raise ValueError(str(err)) from None
    trained_on = manifest["env"]["id"]
    if trained_on != env_id:
        raise ValueError(f"{path}: the policies were trained on env {trained_on!r}, not {env_id!r}")


def load_weights(path: str | Path, module_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Module id -> state dict (numpy arrays) of the export at `path`.

    Raises:
        ValueError: a module is missing from the export, or the export is corrupt
            (:class:`~rl_platform.checkpoints.PolicyExportError`).
    """
    export = export_dir_of(path)
    have = read_manifest(export)["modules"]
    missing = [m for m in module_ids if m not in have]
    if missing:
        raise ValueError(
            f"{export}: no weights for module(s) {', '.join(missing)} (it has "
            f"{', '.join(have)}); train with the same algorithm.shared_policy "
            "or algorithm.groups"
        )
    return {
        module_id: {k: v.numpy() for k, v in module_weights(export, module_id).items()}
        for module_id in module_ids
    }


def set_module_weights(algorithm: Any, weights: dict[str, dict[str, Any]]) -> None:
    """Put module weights into the learner(s) and push them to every env runner.

    Raises:
        ValueError: the weights do not fit the modules (names or shapes).
    """
    current = algorithm.learner_group.get_weights(module_ids=list(weights))
    for module_id, state in weights.items():
        have = current[module_id]
        if set(state) != set(have):
            raise ValueError(
                f"module {module_id!r}: the weights' layers {sorted(set(state) ^ set(have))} "
                "do not match the network (same algorithm and algorithm.network?)"
            )
        for name, value in state.items():
            if tuple(value.shape) != tuple(have[name].shape):
                raise ValueError(
                    f"module {module_id!r}: {name} has shape {tuple(value.shape)}, the network "
                    f"{tuple(have[name].shape)} (same env config and algorithm.network?)"
                )
    algorithm.learner_group.set_weights(weights)
    sync_env_runner_weights(algorithm)


def callback_class(path: str | Path) -> type:
    """An RLlib callback class that loads the export at `path` into a new algorithm.

    Its ``on_algorithm_init`` puts the weights into the learner(s) and every env runner.
    (Ray is imported here, not at module level: experiment validation imports this module.)
    """
    from ray.rllib.callbacks.callbacks import RLlibCallback

    resolved = str(Path(path).resolve())

    class InitialPoliciesCallback(RLlibCallback):
        """Loads ``initial_policies`` into a new algorithm."""

        def on_algorithm_init(self, *, algorithm, **kwargs):  # noqa: D102
            module_ids = list(algorithm.learner_group.get_weights())
            set_module_weights(algorithm, load_weights(resolved, module_ids))

    return InitialPoliciesCallback


class InitialPoliciesFeature(Feature):
    """``initial_policies:``: a run starts from the module weights of a policy export."""

    def validate(self, experiment: Any, env_cls: type) -> None:  # noqa: D102
        if experiment.initial_policies is not None:
            check_initial_policies(experiment.initial_policies, experiment.env.id)

    def callbacks(self, experiment: Any) -> list[type]:  # noqa: D102
        if experiment.initial_policies is None:
            return []
        return [callback_class(experiment.initial_policies)]


FEATURE = InitialPoliciesFeature()
