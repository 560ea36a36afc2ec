"""MADDPG: deterministic decentralized actors, centralized critics over all agents' actions.

Lowe et al. 2017, "Multi-Agent Actor-Critic for Mixed Cooperative-Competitive
Environments" (NeurIPS), algorithm 1, on RLlib 2.60's new API stack:

* each agent's actor ``mu_i(o_i)`` reads only its local observation (decentralized
  execution). Box actions are ``tanh``-squashed into the box and explored with Gaussian
  noise on the env runners; Discrete actions are logits, trained through the
  Gumbel-softmax relaxation (straight-through one-hot by default) and explored by
  sampling it (section 4.2 / appendix of the paper);
* each agent's critic ``Q_i(s, a_1..a_N)`` reads the global state and every agent's
  action, trained on the agent's own reward (so mixed cooperative-competitive tasks
  work) with the target ``y = r_i + gamma Q'_i(s', mu'_1(o'_1)..mu'_N(o'_N))``. With a
  shared policy there is one actor and one critic, which gets the agent's one-hot index;
* the actor gradient is ``grad mu_i Q_i(s, a_1..mu_i(o_i)..a_N)``: the agent's own action
  from its current actor, the others' from the replay (eq. 6), plus the reference code's
  small penalty on the actor's pre-activations;
* target actors and critics follow with Polyak averaging after every gradient step;
* joint transitions are replayed uniformly from
  :class:`~rl_platform.algorithms.replay.JointReplayBuffer` (shared with QMIX).

RLlib pieces: :class:`MADDPGActorModule` (a ``TorchRLModule`` with ``TargetNetworkAPI``,
inference-only on env runners, whose ``forward_inference`` returns the deterministic
action as ``ACTION_DIST_INPUTS`` so the platform's greedy evaluation uses it as is);
:class:`MADDPGCriticModule`, a learner-only module holding the critic(s) and their
targets; :class:`MADDPGLearner`, one joint loss over all modules in ``compute_losses``
(critic parameters are frozen while the actors' loss passes through them, so the summed
backward pass gives each network only its own gradient); :class:`MultiAgentDDPG`, an
``Algorithm`` whose ``training_step`` samples, stores, replays and syncs weights.

Not implemented: policy ensembles (section 4.3) and inferring other agents' policies
(section 4.2, the critic is given the true actions), Ornstein-Uhlenbeck noise (Gaussian
only: OU needs per-agent noise state that RLlib's batched forward passes do not keep),
recurrent actors, prioritized replay, more than one learner, action spaces other than
1-d Box and Discrete, and agents with differing spaces.
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
