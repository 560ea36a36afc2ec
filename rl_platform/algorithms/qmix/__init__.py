"""QMIX and VDN (and the machinery IQL shares): value-based cooperative MARL on RLlib.

Per-agent Q networks trained on the team reward through a joint value: ``vdn`` sums
them, ``qmix`` mixes them monotonically by hypernetworks of the global state. Built on
RLlib's extension points: :class:`AgentQModule` (epsilon-greedy agents, optionally GRU),
:class:`MixerModule` (learner-only), :class:`ValueDecompositionLearner` (the joint loss)
and :class:`ValueDecomposition` (the ``Algorithm``). The model, the papers and what is
not done: docs/algorithms.md, "IQL, VDN and QMIX".
"""

from rl_platform.algorithms.qmix.config import (
    QMIX,
    VALUE_ONLY,
    VDN,
    Hyperparams,
    ValueDecomposition,
    ValueDecompositionAlgorithm,
    ValueDecompositionConfig,
)
from rl_platform.algorithms.qmix.learner import ValueDecompositionLearner
from rl_platform.algorithms.qmix.module import (
    MIXER_ID,
    MIXERS,
    QF_PREDS,
    AgentQModule,
    GRUQNetwork,
    MixerModule,
)

# Policy exports record a module's class as ``__module__.__qualname__`` and load only the
# names of rl_platform.policy_manifest.MODULE_CLASSES: keep the package's public path.
AgentQModule.__module__ = MixerModule.__module__ = __name__

__all__ = [
    "MIXERS",
    "MIXER_ID",
    "QF_PREDS",
    "QMIX",
    "VALUE_ONLY",
    "VDN",
    "AgentQModule",
    "GRUQNetwork",
    "Hyperparams",
    "MixerModule",
    "ValueDecomposition",
    "ValueDecompositionAlgorithm",
    "ValueDecompositionConfig",
    "ValueDecompositionLearner",
]
