"""The ``safety`` section's part in the registry: its check against the env.

The shield itself runs inside :class:`~rl_platform.rewards.RewardEnv` (the runner env
reads the section from its config), so the feature adds nothing to the RLlib config.
"""

from __future__ import annotations

from typing import Any

from rl_platform.registry import Feature
from rl_platform.safety import check_safety


class SafetyFeature(Feature):
    """``safety:``: constraints the env must declare (:func:`~rl_platform.safety.check_safety`)."""

    def validate(self, experiment: Any, env_cls: type) -> None:  # noqa: D102
        if experiment.safety is not None:
            check_safety(experiment.safety, env_cls)


FEATURE = SafetyFeature()
