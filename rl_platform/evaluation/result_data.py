"""Reading the evaluation result: its constants, number formatting, tolerant lookups.

The result is the JSON-ready dict the evaluation suite builds; any section of it may be
missing or None, so every lookup here returns None or an empty container instead of
raising. Shared by :mod:`~rl_platform.evaluation.plots` and
:mod:`~rl_platform.evaluation.report`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

TRAINED = "policy"
DIMENSIONS = ("generalization", "robustness", "coordination", "adaptability")  # in overall
DIMENSION_TITLES = {
    "sample_efficiency": "Sample efficiency",
    "generalization": "Generalization",
    "robustness": "Robustness",
    "coordination": "Coordination",
    "adaptability": "Adaptability",
    "overall": "Overall",
}
ROBUSTNESS_TESTS = ("obs_noise", "action_noise", "random_agent", "faulty_agent")
ABSENT = "absent from the evaluation result"


# -- numbers ------------------------------------------------------------------------------


def fmt(x: Any) -> str:
    """Format a number for a table: 3 significant digits, "n/a" for None or NaN.

    Integers (step counts) are written in full; floats of magnitude 1000 or more are
    rounded to 3 significant digits but written without an exponent (``1234.5`` ->
    ``"1230"``). Strings pass through unchanged.
    """
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        value = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 1000:
        return f"{float(f'{value:.3g}'):.0f}"
    return f"{value:.3g}"


def as_number(x: Any) -> float | None:
    """`x` as a finite-or-infinite float, or None for None, NaN, bools and non-numbers."""
    if x is None or isinstance(x, (bool, str)):
        return None
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def as_array(values: Any) -> np.ndarray | None:
    """A float array of `values` (None -> NaN), or None when empty or ragged."""
    if values is None:
        return None
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.size else None


def lookup(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or None where a level is missing, None or not a dict."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def lookup_dict(data: Any, *keys: str) -> dict:
    """The dict at ``data[k1][k2]...``; an empty dict when it is missing or not a dict."""
    found = lookup(data, *keys)
    return found if isinstance(found, dict) else {}


def policies_of(result: dict) -> list[str]:
    """Policy names in report order: the trained policy, then result["policies"] order.

    Names found only in the scores or dimensions sections are appended, so no row is lost
    when "policies" is missing.
    """
    names: list[str] = []
    for name in [
        *(result.get("policies") or []),
        *lookup_dict(result, "scores"),
        *lookup_dict(result, "dimensions"),
    ]:
        if name not in names:
            names.append(name)
    if TRAINED in names:
        names.remove(TRAINED)
        names.insert(0, TRAINED)
    return names


def union_keys(dicts: Iterable[Any], first: Sequence[str] = ()) -> list[str]:
    """Keys over all dicts in `dicts`, those in `first` leading, then in order of appearance."""
    keys = list(first)
    for d in dicts:
        if isinstance(d, dict):
            keys.extend(k for k in d if k not in keys)
    return keys
