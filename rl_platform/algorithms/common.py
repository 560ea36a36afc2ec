"""The part of every algorithm's RLlib config that comes from the experiment, not the algorithm.

Env, env runners, learners, policy mapping, network, seed, fault tolerance and evaluation
are set here once; each algorithm module only adds its own hyperparameters and modules.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from rl_platform.config import ExperimentConfig

SHARED_MODULE_ID = "shared"

log = logging.getLogger(__name__)


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
    ``on_checkpoint_loaded`` callback of every algorithm built here.
    """
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE

    state = algorithm.learner_group.get_state(
        components=f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}", inference_only=True
    )[COMPONENT_LEARNER]
    module_state = {COMPONENT_RL_MODULE: state[COMPONENT_RL_MODULE]}
    for group in (algorithm.env_runner_group, algorithm.eval_env_runner_group):
        if group is not None:
            group.foreach_env_runner(lambda runner: runner.set_state(module_state))


def env_config_of(experiment: ExperimentConfig) -> dict[str, Any]:
    """The env constructor's config: the env section plus the experiment's reward settings."""
    from rl_platform import registry

    config = {**experiment.env.config, **registry.get_env(experiment.env.id).bound_config}
    config["reward_weights"] = {**config.get("reward_weights", {}), **experiment.rewards.weights}
    if experiment.rewards.team:
        config["team_reward"] = experiment.rewards.team
    return config


def reward_env_config(experiment: ExperimentConfig) -> dict[str, Any]:
    """Config of the :class:`~rl_platform.rewards.RewardEnv` every algorithm trains on."""
    from rl_platform import registry

    return {
        "env_id": experiment.env.id,
        "env_class": registry.get_env(experiment.env.id).load(),
        "env_config": env_config_of(experiment),
        "rewards": experiment.rewards.model_dump(mode="json"),
        "safety": experiment.safety.model_dump(mode="json") if experiment.safety else None,
        "hierarchy": experiment.hierarchy.model_dump(mode="json") if experiment.hierarchy else None,
    }


def experiment_callbacks(experiment: ExperimentConfig) -> list[type]:
    """The RLlib callback classes an experiment needs: reward metrics, curriculum, evaluation."""
    from rl_platform.rewards import RewardMetricsCallback

    callbacks: list[type] = [RewardMetricsCallback]
    if experiment.hierarchy is not None:
        from rl_platform.advanced.hierarchical import StrategyMetricsCallback

        callbacks.append(StrategyMetricsCallback)
    if experiment.monitoring.enabled:
        from rl_platform.monitoring import action_metrics_callback

        callbacks.append(action_metrics_callback())
    if experiment.curriculum is not None:
        from rl_platform.curriculum import callback_class

        callbacks.append(callback_class(experiment, env_config_of(experiment)))
    if experiment.meta is not None:
        from rl_platform.advanced.meta_training import callback_class as meta_callback

        callbacks.append(meta_callback(experiment))
    if experiment.initial_policies is not None:
        from rl_platform.warm_start import callback_class as initial_policies_callback

        callbacks.append(initial_policies_callback(experiment.initial_policies))
    if experiment.evaluation.every > 0:  # after the curriculum: it reads the current level
        from rl_platform.evaluation.callback import callback_class as evaluation_callback

        callbacks.append(evaluation_callback(experiment))
    return callbacks


def with_global_state(
    config: AlgorithmConfig,
    experiment: ExperimentConfig,
    agent_id: bool,
    module_spaces: bool = False,
) -> AlgorithmConfig:
    """Run the experiment's env inside ``GlobalStateEnv`` (obs = {"obs", "state"}).

    ``agent_id`` appends each agent's one-hot index to its local observation (for a
    shared policy). ``module_spaces`` also gives every module its spaces explicitly: RLlib
    2.60's local env runner (``num_env_runners: 0``) cannot infer them from its vector env
    and would hand the modules the env's Dict spaces (the replay-based algorithms need it).
    """
    from ray.rllib.policy.policy import PolicySpec

    from rl_platform.sampling import GlobalStateEnv

    env_config = {**reward_env_config(experiment), "agent_id": agent_id}
    config = config.environment(env=GlobalStateEnv, env_config=env_config)
    if module_spaces:
        wrapped = GlobalStateEnv(env_config)
        mapping = config.policy_mapping_fn
        config = config.multi_agent(
            policies={
                mapping(agent, None): PolicySpec(
                    observation_space=wrapped.observation_spaces[agent],
                    action_space=wrapped.action_spaces[agent],
                )
                for agent in wrapped.possible_agents
            }
        )
    return config


def module_ids(experiment: ExperimentConfig, env_cls: type) -> list[str]:
    """The RLModule ids a run trains, in a stable order.

    Raises:
        ConfigError: a shared policy is asked for agents whose spaces differ.
    """
    from rl_platform.config import ConfigError

    env = env_cls(env_config_of(experiment))
    if not experiment.algorithm.shared_policy:
        return list(env.possible_agents)
    first = env.possible_agents[0]
    for agent in env.possible_agents[1:]:
        if (env.observation_spaces[agent], env.action_spaces[agent]) != (
            env.observation_spaces[first],
            env.action_spaces[first],
        ):
            raise ConfigError(
                f"{experiment.name}: algorithm.shared_policy is true but agents {first} and "
                f"{agent} of env {experiment.env.id!r} have different observation or action "
                "spaces; set algorithm.shared_policy: false."
            )
    return [SHARED_MODULE_ID]


def with_sampler(
    config: AlgorithmConfig, experiment: ExperimentConfig, batched_sampling: bool
) -> AlgorithmConfig:
    """Use the batched env runner when ``resources.sampler`` asks for it and it can run.

    ``batched_sampling`` says whether the algorithm samples through stock connectors and
    its modules' action distributions or their own actions (the PPO family; IQL, VDN and
    QMIX's epsilon-greedy), which the batched runner reproduces; otherwise, or when the
    env or the reward settings are not supported
    (:func:`rl_platform.sampling.unsupported_reason`), the stock runner samples and a log
    line says why.
    """
    if experiment.resources.sampler != "batched":
        return config
    reason = None
    if not batched_sampling:
        reason = f"algorithm {experiment.algorithm.id!r} does not support it"
    if reason is None:
        from rl_platform.sampling import unsupported_reason

        reason = unsupported_reason(experiment)
    if reason is not None:
        log.warning("resources.sampler: batched -> using the stock sampler: %s", reason)
        return config
    from rl_platform.sampling import BatchedEnvRunner

    log.info(
        "resources.sampler: batched (%d env copies per runner)",
        experiment.resources.num_envs_per_env_runner,
    )
    return config.env_runners(env_runner_cls=BatchedEnvRunner)


def apply_experiment(
    config: AlgorithmConfig,
    experiment: ExperimentConfig,
    env_cls: type,
    batched_sampling: bool = False,
) -> AlgorithmConfig:
    """Set everything an experiment decides on an algorithm's (new-stack) RLlib config.

    The env runners build the experiment's env inside :class:`~rl_platform.rewards.RewardEnv`
    (the reward engineering), whatever the algorithm; with a ``hierarchy`` section, inside
    :mod:`rl_platform.advanced.hierarchical`'s env around it. ``batched_sampling``: the
    algorithm can sample with the batched runner (:func:`with_sampler`).
    """
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from rl_platform.rewards import RewardEnv

    runner_env: type = RewardEnv
    if experiment.hierarchy is not None:  # meta-controllers choosing strategies
        from rl_platform.advanced.hierarchical import env_class

        runner_env = env_class(experiment.hierarchy)

    res = experiment.resources
    shared = experiment.algorithm.shared_policy
    network = experiment.algorithm.network
    config = (
        config.api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(env=runner_env, env_config=reward_env_config(experiment))
        .env_runners(
            num_env_runners=res.num_env_runners,
            num_envs_per_env_runner=res.num_envs_per_env_runner,
            num_cpus_per_env_runner=res.num_cpus_per_env_runner,
            rollout_fragment_length=res.rollout_fragment_length,
        )
        .learners(num_learners=res.num_learners, num_gpus_per_learner=res.num_gpus_per_learner)
        .multi_agent(
            policies=set(module_ids(experiment, env_cls)),
            policy_mapping_fn=map_to_shared if shared else map_to_self,
        )
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=list(network.hidden_sizes),
                fcnet_activation=network.activation,
                vf_share_layers=False,
            )
        )
        .debugging(seed=experiment.seed)
        .callbacks(
            callbacks_class=experiment_callbacks(experiment),
            on_checkpoint_loaded=sync_env_runner_weights,
        )
        .fault_tolerance(
            restart_failed_env_runners=True,
            max_num_env_runner_restarts=res.max_env_runner_restarts,
            delay_between_env_runner_restarts_s=1.0,
        )
    )
    if experiment.hierarchy is not None:
        from rl_platform.advanced.hierarchical import with_meta_modules

        config = with_meta_modules(config, experiment, env_cls)
    return with_sampler(config, experiment, batched_sampling)
