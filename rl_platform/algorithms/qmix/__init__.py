"""QMIX and VDN (and the machinery IQL shares): value-based cooperative MARL on RLlib.

Each agent has a Q network on its own observation (decentralized execution); during
training the agents' chosen-action Q values are combined into a joint value ``Q_tot``
trained on the team reward with one-step double-DQN targets:

* ``vdn``: ``Q_tot = sum_a Q_a`` (Sunehag et al. 2018, "Value-Decomposition Networks For
  Cooperative Multi-Agent Learning");
* ``qmix``: ``Q_tot = mixer(Q_1..Q_N; s)``, monotonic in every ``Q_a``, its weights made
  from the global state ``s`` by hypernetworks (Rashid et al. 2018, "QMIX: Monotonic
  Value Function Factorisation for Deep Multi-Agent Reinforcement Learning");
* ``iql`` (:mod:`rl_platform.algorithms.iql`): no mixer, each agent's own reward
  (independent DQN learners; Tan 1993, Tampuu et al. 2017).

RLlib 2.60 ships none of these, so they are built on its extension points:

* :class:`AgentQModule`, a ``TorchRLModule``: epsilon-greedy in ``_forward_exploration``
  and greedy in ``_forward_inference`` (which also returns the Q values as
  ``ACTION_DIST_INPUTS`` so the platform's greedy evaluation is an argmax), a target
  network (``TargetNetworkAPI``) kept off the env runners (``InferenceOnlyAPI``);
* :class:`MixerModule`, a learner-only ``TorchRLModule`` holding the mixer and its target
  (parameterless for VDN and IQL); it is part of the MultiRLModule, so RLlib checkpoints
  it and gives it an optimizer;
* :class:`~rl_platform.algorithms.replay.JointReplayBuffer` (shared with MADDPG): joint
  transitions (every agent's observation, action, reward, next observation; global state
  and next state; termination) rebuilt from the per-agent data of RLlib's
  ``MultiAgentEpisode`` chunks, with a mask for agents that have left;
* :class:`ValueDecompositionLearner`, a ``TorchLearner`` whose ``compute_losses`` runs
  every agent's Q network, the mixer and the double-Q target on one joint batch, and
  whose ``after_gradient_based_update`` updates target networks (hard or Polyak);
* :class:`ValueDecomposition`, an ``Algorithm`` whose ``training_step`` samples from the
  env runners, stores, samples the replay, updates the learner and syncs weights.

Envs are wrapped in :class:`~rl_platform.sampling.GlobalStateEnv`: an agent's
observation is ``{"obs": local, "state": global}``; the Q network reads only ``obs``, the
replay takes ``state`` for the mixer. With a shared policy the agent's one-hot index is
appended to ``obs`` (the paper's parameter sharing with agent ids).

With ``recurrent: true`` each agent's network is the paper's (and pymarl's) GRU agent,
``obs -> fc -> ReLU -> GRUCell -> fc -> Q``: a stateful RLModule whose hidden state the env
runners carry across an episode's steps (``STATE_IN`` / ``STATE_OUT``), trained from a
:class:`~rl_platform.algorithms.replay.SequenceReplayBuffer` of fixed-length, padded
sequences; the learner unrolls online and target networks over each sequence from the
stored hidden state (zeros at an episode's start) and applies the mixer per time step
(:func:`~rl_platform.algorithms.mixers.sequence_td_loss`).

Not done: action masks, prioritized replay, burn-in, more than one learner (the joint
loss reads several modules at once, which a per-module DDP split does not cover).
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
