"""Hyperparameter search: a sweep YAML -> Ray Tune + Optuna (TPE or random) + ASHA.

A sweep YAML is an experiment plus a ``tune:`` section (:class:`~rl_platform.config.TuneSpec`).
Every trial is that experiment with the trial's values set at the search space's key
paths, built like ``rlp train`` inside a Tune ``Trainable`` that reserves what the
algorithm asks for. Optuna suggests the values and keeps the study in ``optuna.journal``
in the sweep directory by default (or where ``tune.storage`` says); ASHA stops weak
trials early. ``rlp tune --resume SWEEP_DIR`` continues a stopped or killed sweep.

Modules: :mod:`.space` (search space), :mod:`.plan` (validation before Ray starts),
:mod:`.search` (the Tune searcher over the Optuna study), :mod:`.storage` (where the
study lives), :mod:`.trial` (what runs in Tune), :mod:`.results` and :mod:`.plots`
(the summary), :mod:`.sweep` (:func:`tune`). The names below are imported on first use,
so ``rl_platform.tuning.storage`` or ``.space`` load without Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

from rl_platform.runs import BEST_FILE, PLOTS_DIR, SWEEP_FILE, TRIALS_FILE

# public name -> the module of this package that defines it
_EXPORTS = {
    "DISTRIBUTIONS": "space",
    "FIXED_PATHS": "space",
    "NETWORK_PARAM": "space",
    "NETWORK_PATH": "space",
    "SEMANTIC_NAMES": "space",
    "SEMANTIC_PARAMS": "space",
    "SearchParam": "space",
    "encode_choice": "space",
    "parse_distribution": "space",
    "resolve_search_space": "space",
    "trial_overrides": "space",
    "SweepPlan": "plan",
    "plan_sweep": "plan",
    "StudySearch": "search",
    "SweepProgress": "trial",
    "SweepTrial": "trial",
    "TrialEvent": "trial",
    "STUDY_STATUS": "results",
    "SweepResult": "results",
    "TrialRow": "results",
    "best_trial": "results",
    "write_best_yaml": "results",
    "TOP_TRIALS_PLOTTED": "plots",
    "write_plots": "plots",
    "summarize": "sweep",
    "tune": "sweep",
}

__all__ = ["BEST_FILE", "PLOTS_DIR", "SWEEP_FILE", "TRIALS_FILE", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
