"""Reading a trial's result: a finite metric value, the env steps it sampled."""

from __future__ import annotations

import math
from typing import Any

from rl_platform.stopping import ENV_STEPS_KEY, lookup_metric


def finite(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, not a number, NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def sampled_env_steps(result: dict[str, Any]) -> int:
    """The env steps a result says the trial sampled in all (0 when it does not say)."""
    value = lookup_metric(result, ENV_STEPS_KEY)
    if value is None:
        value = lookup_metric(result, f"env_runners/{ENV_STEPS_KEY}")
    return int(value or 0)
