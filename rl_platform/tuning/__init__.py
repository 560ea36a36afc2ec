"""Hyperparameter search: a sweep YAML -> Ray Tune + Optuna (TPE or random) + ASHA.

A sweep YAML is an experiment plus a ``tune:`` section (:class:`~rl_platform.config.TuneSpec`);
each trial is that experiment with the trial's values, run like ``rlp train`` inside a
Tune ``Trainable``; ``rlp tune --resume SWEEP_DIR`` continues a sweep (docs/sweeps.md).
Modules: :mod:`.space` (search space), :mod:`.plan` (validation before Ray starts),
:mod:`.search` (the searcher over the Optuna study), :mod:`.storage` (where the study
lives), :mod:`.trial`, :mod:`.results` and :mod:`.plots`, :mod:`.sweep` (:func:`tune`).
"""

from rl_platform.runs import BEST_FILE, PLOTS_DIR, SWEEP_FILE, TRIALS_FILE
from rl_platform.tuning.plan import SweepPlan, plan_sweep
from rl_platform.tuning.plots import TOP_TRIALS_PLOTTED, write_plots
from rl_platform.tuning.results import (
    STUDY_STATUS,
    SweepResult,
    TrialRow,
    best_trial,
    write_best_yaml,
)
from rl_platform.tuning.search import StudySearch
from rl_platform.tuning.space import (
    DISTRIBUTIONS,
    FIXED_PATHS,
    NETWORK_PARAM,
    NETWORK_PATH,
    SEMANTIC_NAMES,
    SEMANTIC_PARAMS,
    SearchParam,
    encode_choice,
    parse_distribution,
    resolve_search_space,
    trial_overrides,
)
from rl_platform.tuning.sweep import summarize, tune
from rl_platform.tuning.trial import SweepProgress, SweepTrial, TrialEvent

__all__ = [
    "BEST_FILE",
    "DISTRIBUTIONS",
    "FIXED_PATHS",
    "NETWORK_PARAM",
    "NETWORK_PATH",
    "PLOTS_DIR",
    "SEMANTIC_NAMES",
    "SEMANTIC_PARAMS",
    "STUDY_STATUS",
    "SWEEP_FILE",
    "TOP_TRIALS_PLOTTED",
    "TRIALS_FILE",
    "SearchParam",
    "StudySearch",
    "SweepPlan",
    "SweepProgress",
    "SweepResult",
    "SweepTrial",
    "TrialEvent",
    "TrialRow",
    "best_trial",
    "encode_choice",
    "parse_distribution",
    "plan_sweep",
    "resolve_search_space",
    "summarize",
    "trial_overrides",
    "tune",
    "write_best_yaml",
    "write_plots",
]
