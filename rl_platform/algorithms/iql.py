"""IQL: independent deep Q-learning, one DQN learner per agent on its own reward.

The value-decomposition machinery of :mod:`rl_platform.algorithms.qmix` without a mixer
(Tan 1993; Tampuu et al. 2017), so IQL, VDN and QMIX differ only in how the agents'
values are combined: docs/algorithms.md, "IQL, VDN and QMIX". The seed document's
tabular Q-learner is :class:`rl_platform.algorithms.tabular.TabularQLearning`.
"""

from __future__ import annotations

from typing import ClassVar

from rl_platform.algorithms.qmix import ValueDecompositionAlgorithm
from rl_platform.config.algorithms import IQLParams


class IQL(ValueDecompositionAlgorithm):
    """``algorithm.id: iql``: independent double-DQN learners (shared or per-agent nets)."""

    Hyperparams: ClassVar[type[IQLParams]] = IQLParams
    mixer: ClassVar[str] = "none"
