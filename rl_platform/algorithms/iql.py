"""IQL: independent deep Q-learning, one DQN learner per agent on its own reward.

Each agent treats the others as part of the environment (Tan 1993, "Multi-Agent
Reinforcement Learning: Independent vs. Cooperative Agents"; Tampuu et al. 2017 with deep
Q networks): a Q network on its local observation, double-DQN targets from its own
reward, a target network and an epsilon-greedy schedule. Parameters are shared (one
network, agent one-hot appended to the observation) or per agent, from
``algorithm.shared_policy``. It is the value-decomposition machinery of
:mod:`rl_platform.algorithms.qmix` without a mixer, so IQL, VDN and QMIX differ only in
how the agents' values are combined, and benchmarks compare like with like.

The tabular Q-learner of the seed document, for small discrete tasks without Ray, is
:class:`rl_platform.algorithms.tabular.TabularQLearning`.
"""

from __future__ import annotations

from typing import ClassVar

from rl_platform.algorithms.qmix import ValueDecompositionAlgorithm
from rl_platform.config.algorithms import IQLParams


class IQL(ValueDecompositionAlgorithm):
    """``algorithm.id: iql``: independent double-DQN learners (shared or per-agent nets)."""

    Hyperparams: ClassVar[type[IQLParams]] = IQLParams
    mixer: ClassVar[str] = "none"
