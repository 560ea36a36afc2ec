"""Experiment tracking: the YAML's ``tracking`` section as Tune's own logger callbacks.

Each trial becomes one W&B run (``WandbLoggerCallback``) and one MLflow run
(``MLflowLoggerCallback``) named like the trial (:func:`trial_namer`): the trial's config
(its flattened hyperparameters) once, then every iteration's metrics (episode return, env
steps, losses). The run directory is a tag (MLflow) and the run's notes (W&B).
``rlp train``, ``rlp train --seeds`` and ``rlp tune`` call :func:`check_tracking` before
Ray starts and pass :func:`tracking_callbacks` to Tune; ``rlp submit`` runs those commands
in the cluster.
"""

from __future__ import annotations

import importlib.util
import numbers
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rl_platform.config import ConfigError, ExperimentConfig
from rl_platform.monitoring import flatten_result

EXTRA_HINT = "pip install 'rl_platform[tracking]'"
# The section's trackers and the module each one imports.
_MODULES = {"wandb": "wandb", "mlflow": "mlflow"}
RUN_DIR_TAG = "rlp.run_dir"
EXPERIMENT_TAG = "rlp.experiment"
MLFLOW_BATCH = 1000  # MLflow's most metrics in one log_batch


def check_tracking(experiment: ExperimentConfig) -> None:
    """Refuse a tracker whose package is not installed, before anything starts.

    Raises:
        ConfigError: ``tracking.wandb`` or ``tracking.mlflow`` is set and its package is
            missing.
    """
    tracking = experiment.tracking
    if tracking is None:
        return
    for name, module in _MODULES.items():
        if getattr(tracking, name) is not None and not _installed(module):
            raise ConfigError(f"tracking.{name} needs the tracking extra: {EXTRA_HINT}")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # a module left in sys.modules without a spec
        return False


def tracking_callbacks(
    experiment: ExperimentConfig,
    run_dir: Path | str,
    group: str | None = None,
) -> list[Any]:
    """Tune logger callbacks for the experiment's trackers (none without a ``tracking``).

    Args:
        experiment: the experiment (its ``tracking`` section and name).
        run_dir: the run, sweep or group directory (a URI string for runs on cloud
            storage), recorded with every tracked run so users find its checkpoints; W&B
            writes under ``<run_dir>/wandb`` unless ``$WANDB_DIR`` says otherwise.
        group: the W&B group when the section names none (default: the experiment name).
    """
    tracking = experiment.tracking
    if tracking is None:
        return []
    check_tracking(experiment)
    where = str(run_dir) if isinstance(run_dir, str) else str(Path(run_dir).resolve())
    callbacks: list[Any] = []
    if tracking.wandb is not None:
        from ray.air.integrations.wandb import WandbLoggerCallback

        spec = tracking.wandb
        options: dict[str, Any] = {"notes": f"rl_platform run directory: {where}"}
        # The logging actor is a Ray worker, whose environment is the cluster's, not
        # this process's: hand it the mode and folder this process was given.
        mode = spec.mode or os.environ.get("WANDB_MODE")
        if mode:
            options["mode"] = mode
        # W&B's own default is the logging actor's folder, Tune's temporary copy of the
        # trial folder: offline runs go beside the trials instead.
        folder = os.environ.get("WANDB_DIR") or (where if isinstance(run_dir, Path) else None)
        if folder:
            options["dir"] = folder
        if spec.entity is not None:
            options["entity"] = spec.entity
        if spec.tags:
            options["tags"] = list(spec.tags)
        callbacks.append(
            WandbLoggerCallback(
                project=spec.project, group=spec.group or group or experiment.name, **options
            )
        )
    if tracking.mlflow is not None:
        spec_ml = tracking.mlflow
        tags = {RUN_DIR_TAG: where, EXPERIMENT_TAG: experiment.name, **spec_ml.tags}
        callbacks.append(
            _mlflow_callback_class()(
                tracking_uri=spec_ml.tracking_uri,
                experiment_name=spec_ml.experiment_name or experiment.name,
                tags=tags,
            )
        )
    return callbacks


def _mlflow_callback_class() -> type:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from mlflow.utils.validation import path_not_unique, validate_param_and_metric_name
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class MLflowCallback(MLflowLoggerCallback):
        """Tune's MLflow callback, sending each result as one batch and without its config.

        The config is the run's params already. Tune's own ``log_trial_result`` sends every
        metric in a request of its own: a second per iteration for the ~120 metrics of an
        RLlib result on a local sqlite store, one HTTP request each on a server.
        """

        def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:  # noqa: D102
            step = int(result.get("training_iteration", iteration))
            stamp = int(time.time() * 1000)
            metrics = [
                Metric(key, float(value), stamp, step)
                for key, value in flatten_result(result).items()
                if not key.startswith("config/")
                and _is_number(value)
                # a name MLflow refuses would fail the whole batch: leave it out
                and validate_param_and_metric_name(key)
                and not path_not_unique(key)
            ]
            client = MlflowClient(self.tracking_uri, self.registry_uri)
            run_id = self._trial_runs[trial]  # Tune's trial -> MLflow run id (test_tracking)
            for start in range(0, len(metrics), MLFLOW_BATCH):
                client.log_batch(run_id, metrics=metrics[start : start + MLFLOW_BATCH])

    return MLflowCallback


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def trial_namer(prefix: str, dirname: Callable[[Any], str]) -> Callable[[Any], str]:
    """Tune's ``trial_name_creator``: ``<prefix>/<trial folder>``, the tracked runs' names.

    Picklable (Tune saves it with the run's state for a resume).
    """
    return partial(_trial_name, prefix, dirname)


def _trial_name(prefix: str, dirname: Callable[[Any], str], trial: Any) -> str:
    return f"{prefix}/{dirname(trial)}"
