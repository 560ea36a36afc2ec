"""MADDPG: deterministic decentralized actors, centralized critics over all agents' actions.

Lowe et al. 2017 (algorithm 1) on RLlib's new API stack: :class:`MADDPGActorModule`
(the actors, inference-only on env runners), :class:`MADDPGCriticModule` (learner-only
critics and targets), :class:`MADDPGLearner` (one joint loss) and
:class:`MultiAgentDDPG` (the ``Algorithm``), replaying from the
:class:`~rl_platform.algorithms.replay.JointReplayBuffer` shared with QMIX. The model
and what is not implemented: docs/algorithms.md, "MADDPG".
"""

from rl_platform.algorithms.maddpg.config import (
    MADDPG,
    PLATFORM_ONLY,
    Hyperparams,
    MADDPGConfig,
    MultiAgentDDPG,
    action_dim_of,
)
from rl_platform.algorithms.maddpg.learner import (
    MADDPGLearner,
    joint_actions_with_own,
    maddpg_losses,
    shared_joint_actions,
)
from rl_platform.algorithms.maddpg.module import (
    CRITIC_ID,
    CentralCritics,
    MADDPGActorModule,
    MADDPGCriticModule,
    gumbel_softmax_action,
    mlp,
    squash_to_box,
)

# Policy exports record a module's class as ``__module__.__qualname__`` and load only the
# names of rl_platform.policy_manifest.MODULE_CLASSES: keep the package's public path.
MADDPGActorModule.__module__ = MADDPGCriticModule.__module__ = __name__

__all__ = [
    "CRITIC_ID",
    "MADDPG",
    "PLATFORM_ONLY",
    "CentralCritics",
    "Hyperparams",
    "MADDPGActorModule",
    "MADDPGConfig",
    "MADDPGCriticModule",
    "MADDPGLearner",
    "MultiAgentDDPG",
    "action_dim_of",
    "gumbel_softmax_action",
    "joint_actions_with_own",
    "maddpg_losses",
    "mlp",
    "shared_joint_actions",
    "squash_to_box",
]
