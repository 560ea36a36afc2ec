"""A sweep's outcome: one row per trial, the best trial, ``trials.csv`` and ``best.yaml``."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rl_platform.stopping import lookup_metric, stop_reached
from rl_platform.tuning.metrics import finite, sampled_env_steps
from rl_platform.tuning.plan import SweepPlan
from rl_platform.tuning.space import SearchParam, encode_choice


@dataclass
class TrialRow:
    """One trial's outcome: status, budget used, final metric and values."""

    trial_id: str
    number: int | None  # the Optuna trial number
    status: str  # complete, stopped early, error, interrupted
    iterations: int
    env_steps: int
    value: float | None
    params: dict[str, Any]
    trial_dir: Path | None
    checkpoint: Path | None
    failures: int = 0


@dataclass
class SweepResult:
    """The outcome of :func:`tune`: where everything is, the trials and the best one."""

    sweep_dir: Path
    status: str  # "finished" or "interrupted"
    num_samples: int
    metric: str
    mode: str
    searcher: str
    scheduler: str
    study_name: str
    storage: str
    trials: list[TrialRow] = field(default_factory=list)
    best: TrialRow | None = None
    best_yaml: Path | None = None
    plots: list[Path] = field(default_factory=list)
    skipped_params: list[str] = field(default_factory=list)
    env_steps: int = 0
    wall_time_s: float = 0.0

    def counts(self) -> dict[str, int]:
        """Trials per status."""
        out: dict[str, int] = {}
        for row in self.trials:
            out[row.status] = out.get(row.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (paths as strings)."""

        def clean(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return value

        data = clean(asdict(self))
        data["counts"] = self.counts()
        return data


STUDY_STATUS = {"COMPLETE": "complete", "PRUNED": "stopped early", "FAIL": "error"}


def trial_row(plan: SweepPlan, trial: Any, study_trial: Any | None) -> TrialRow:
    """A Tune trial's row; its status comes from the study where Optuna has it.

    The study is the record of what finished (Tune marks trials it stopped on Ctrl-C
    TERMINATED in memory too): COMPLETE is ``complete``, PRUNED ``stopped early``, FAIL
    ``error``; a trial still RUNNING there is ``interrupted`` (or ``pending`` before its
    first result).
    """
    last = trial.last_result or {}
    config = trial.config
    value = finite(lookup_metric(last, plan.spec.metric))
    if study_trial is not None:
        status = STUDY_STATUS.get(study_trial.state.name, "")
    elif trial.status == "ERROR":
        status = "error"
    elif trial.status == "TERMINATED" and stop_reached(plan.experiment, last):
        status = "complete"
    else:
        status = ""
    if not status:
        status = "interrupted" if last else "pending"
    checkpoint = None
    latest = getattr(trial, "checkpoint", None)
    if latest is not None:
        checkpoint = Path(latest.path)
    return TrialRow(
        trial_id=trial.trial_id,
        number=None if study_trial is None else study_trial.number,
        status=status,
        iterations=int(last.get("training_iteration", 0)),
        env_steps=sampled_env_steps(last),
        value=value,
        params={p.name: p.decode(config[p.name]) for p in plan.params if p.name in config},
        trial_dir=Path(trial.path) if getattr(trial, "path", None) else None,
        checkpoint=checkpoint,
        failures=int(getattr(trial, "num_failures", 0)),
    )


def best_trial(rows: list[TrialRow], mode: str) -> TrialRow | None:
    """The best trial that ran to the stop criterion (else the best with any value)."""
    sign = 1.0 if mode == "max" else -1.0
    for pool in (
        [r for r in rows if r.status == "complete" and r.value is not None],
        [r for r in rows if r.value is not None],
    ):
        if pool:
            return max(pool, key=lambda r: sign * r.value)
    return None


def write_trials_csv(path: Path, rows: list[TrialRow], params: list[SearchParam]) -> None:
    """Write ``trials.csv``: one row per trial, one column per parameter (JSON values)."""
    names = [p.name for p in params]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["trial", "optuna_trial", "status", "iterations", "env_steps", "value", "failures"]
            + names
            + ["trial_dir"]
        )
        for r in rows:
            writer.writerow(
                [r.trial_id, r.number, r.status, r.iterations, r.env_steps, r.value, r.failures]
                + [json.dumps(r.params[n]) if n in r.params else "" for n in names]
                + [r.trial_dir or ""]
            )


def write_best_yaml(plan: SweepPlan, best: TrialRow, path: Path, sweep_dir: Path) -> None:
    """The base experiment with the best trial's values: ``rlp train best.yaml`` runs it."""
    encoded = {p.name: encode_choice(v) if p.kind == "choice" else v for p, v in _pairs(plan, best)}
    experiment = plan.best_experiment(encoded)
    values = ", ".join(f"{k} = {_short(v)}" for k, v in best.params.items())
    header = (
        f"# The best trial of the sweep {sweep_dir} (trial {best.trial_id}, Optuna trial "
        f"{best.number}):\n# {plan.spec.metric} = {best.value} after {best.iterations} "
        f"iterations.\n# Values found: {values}.\n#\n#   rlp train {path}\n"
    )
    path.write_text(header + experiment.to_yaml())


def _pairs(plan: SweepPlan, row: TrialRow) -> list[tuple[SearchParam, Any]]:
    return [(p, row.params[p.name]) for p in plan.params if p.name in row.params]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value)
