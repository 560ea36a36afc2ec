"""What every algorithm shares: module ids, policy mappings, the weight push, the build context.

The experiment's part of an RLlib config (env, runners, callbacks, features) is set by
:mod:`rl_platform.builder`; an algorithm only adds its own hyperparameters and modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rl_platform.config import ConfigError
from rl_platform.config.groups import SHARED_MODULE_ID, GroupError, ModuleMapping, modules_of
from rl_platform.registry import env_config_of

if TYPE_CHECKING:
    from rl_platform.config import ExperimentConfig

__all__ = ["SHARED_MODULE_ID", "BuildContext", "map_to_self", "map_to_shared", "module_ids"]


@dataclass(frozen=True)
class BuildContext:
    """What the builder tells an algorithm about the run it configures.

    ``env_config`` is the env constructor's config (:func:`rl_platform.registry.env_config_of`).
    """

    experiment: ExperimentConfig
    env_cls: type
    env_config: dict[str, Any]

    def probe(self) -> Any:
        """A new instance of the experiment's env, for its agents and spaces."""
        return self.env_cls(dict(self.env_config))


def map_to_shared(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """Policy mapping for parameter sharing: every agent uses one module."""
    return SHARED_MODULE_ID


def map_to_self(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """Policy mapping for per-agent parameters: each agent has a module named after it."""
    return agent_id


def sync_env_runner_weights(algorithm: Any, **kwargs: Any) -> None:
    """Push the learners' module weights to every env runner and wait for it.

    After a checkpoint is loaded RLlib 2.60 pushes the weights fire-and-forget through the
    actor manager, which drops the request while a runner has one in flight: the first
    iteration of a resumed run then samples with the initial weights. This synchronous
    push (no weights sequence number, so runners always take it) closes that gap. Also an
    ``on_checkpoint_loaded`` callback of every algorithm the builder makes.
    """
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE

    state = algorithm.learner_group.get_state(
        components=f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}", inference_only=True
    )[COMPONENT_LEARNER]
    module_state = {COMPONENT_RL_MODULE: state[COMPONENT_RL_MODULE]}
    for group in (algorithm.env_runner_group, algorithm.eval_env_runner_group):
        if group is not None:
            group.foreach_env_runner(lambda runner: runner.set_state(module_state))


def module_ids(experiment: ExperimentConfig, env_cls: type) -> list[str]:
    """The RLModule ids a run trains, in a stable order (see :func:`policy_mapping`).

    Raises:
        ConfigError: agents whose spaces differ share a module, or ``algorithm.groups``
            does not put every agent in exactly one group.
    """
    env = env_cls(env_config_of(experiment))
    mapping = agent_modules_of(experiment, env.possible_agents)
    first: dict[str, str] = {}
    for agent, module in mapping.items():
        other = first.setdefault(module, agent)
        if (env.observation_spaces[agent], env.action_spaces[agent]) != (
            env.observation_spaces[other],
            env.action_spaces[other],
        ):
            fix = (
                "put them in different groups"
                if experiment.algorithm.groups
                else "set algorithm.shared_policy: false or algorithm.groups"
            )
            raise ConfigError(
                f"{experiment.name}: agents {other} and {agent} of env {experiment.env.id!r} "
                f"share module {module!r} but have different observation or action spaces; "
                f"{fix}."
            )
    return list(first)


def agent_modules_of(experiment: ExperimentConfig, agents: Any) -> dict[str, str]:
    """``{agent: module id}`` of the experiment's algorithm section for `agents`.

    Raises:
        ConfigError: ``algorithm.groups`` does not fit the agents.
    """
    try:
        return modules_of(experiment.algorithm, agents)
    except GroupError as err:
        raise ConfigError(f"{experiment.name}: {err}") from None


def policy_mapping(experiment: ExperimentConfig, env_cls: type) -> Any:
    """RLlib's policy mapping of the experiment's modules (see :func:`module_ids`).

    :func:`map_to_shared`, :func:`map_to_self` or, with groups, a data-only
    :class:`~rl_platform.config.groups.ModuleMapping`.
    """
    if not experiment.algorithm.groups:
        return map_to_shared if experiment.algorithm.shared_policy else map_to_self
    env = env_cls(env_config_of(experiment))
    return ModuleMapping(agent_modules_of(experiment, env.possible_agents))
