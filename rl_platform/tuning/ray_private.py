"""The one place tuning reads a private Ray attribute (STYLE rule 22).

``Tuner.fit`` returns a ``ResultGrid``, whose public ``Result`` objects lack what the
sweep summary reads of each trial (Tune's status, failures, latest checkpoint); Tune's
``Trial`` objects are in its private ``_experiment_analysis``. A unit test
(tests/unit/test_tuning.py) fails loudly when a Ray upgrade moves them.
"""

from __future__ import annotations

from typing import Any


def fitted_trials(results: Any) -> list[Any]:
    """Tune's trials of a finished ``Tuner.fit`` (its ``ResultGrid``)."""
    return list(results._experiment_analysis.trials)
