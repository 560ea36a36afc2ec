"""The one composition root: an experiment -> its RLlib AlgorithmConfig.

The only module that knows the algorithm, the env, the sampler and every feature at
once. :func:`build_algorithm_config` asks the registered algorithm
(:class:`~rl_platform.registry.Algorithm`) for a new config and to check the env, sets
the experiment's part (env runners' env and resources, policies, network, seed,
callbacks, fault tolerance), puts the env inside ``GlobalStateEnv`` when the algorithm
declares ``global_state``, lets the algorithm configure its own training settings and
modules, then each feature of :data:`rl_platform.registry.FEATURES` in order, then
``algorithm.rllib``'s settings, and last picks the sampler. Train, tune and submit share it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rl_platform import registry
from rl_platform.algorithms.common import (
    BuildContext,
    agent_modules_of,
    module_ids,
    policy_mapping,
    sync_env_runner_weights,
)
from rl_platform.config import ConfigError
from rl_platform.registry import env_config_of

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from rl_platform.config import ExperimentConfig
    from rl_platform.registry import Feature

log = logging.getLogger(__name__)


def features() -> list[Feature]:
    """Every registered feature, in the order the builder applies them."""
    return [registry.load_feature(name) for name in registry.FEATURES]


def reward_env_config(experiment: ExperimentConfig) -> dict[str, Any]:
    """Config of the runner env (:class:`~rl_platform.rewards.RewardEnv` or around it)."""
    return {
        "env_id": experiment.env.id,
        "env_class": registry.get_env(experiment.env.id).load(),
        "env_config": env_config_of(experiment),
        "rewards": experiment.rewards.model_dump(mode="json"),
        "safety": experiment.safety.model_dump(mode="json") if experiment.safety else None,
        "hierarchy": experiment.hierarchy.model_dump(mode="json") if experiment.hierarchy else None,
    }


def runner_env(experiment: ExperimentConfig, active: list[Feature] | None = None) -> type:
    """The env class the env runners build: the last feature's that names one."""
    found = [f.runner_env(experiment) for f in (features() if active is None else active)]
    named = [env for env in found if env is not None]
    if not named:
        raise ConfigError(f"{experiment.name}: no registered feature names a runner env.")
    return named[-1]


def experiment_callbacks(
    experiment: ExperimentConfig, active: list[Feature] | None = None
) -> list[type]:
    """The RLlib callback classes the experiment's features add, in feature order."""
    return [c for f in (features() if active is None else active) for c in f.callbacks(experiment)]


def shares_modules(experiment: ExperimentConfig, env_cls: type) -> bool:
    """Whether some module acts for several agents (then agent ids tell them apart)."""
    if not experiment.algorithm.groups:
        return experiment.algorithm.shared_policy
    agents = env_cls(env_config_of(experiment)).possible_agents
    modules = list(agent_modules_of(experiment, agents).values())
    return len(set(modules)) < len(modules)


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


@dataclass(frozen=True)
class SamplerChoice:
    """Which env runner samples a run (``runner``: stock or batched) and why not batched."""

    asked: str  # resources.sampler: auto, batched or stock
    runner: str
    num_envs: int
    reason: str | None = None  # why the batched runner cannot run it (auto, batched)

    def line(self) -> str | None:
        """The one line ``rlp train`` and ``rlp tune`` print; None for an explicit stock."""
        if self.runner == "batched":
            copies = "copy" if self.num_envs == 1 else "copies"
            return f"sampler: batched ({self.num_envs} env {copies} per runner)"
        if self.reason is None:
            return None
        return f"sampler: stock (the batched runner cannot run this: {self.reason})"


def view_override(env_cls: type) -> str | None:
    """Why an env class's own ``reset``/``step`` would be skipped by the batched runner.

    The batched runner steps the class's batched core, not its RLlib view: a subclass
    that overrides the view's ``reset`` or ``step`` below the class that names the core
    (``core_cls``) would lose that code.
    """
    owner = next((c for c in env_cls.__mro__ if "core_cls" in vars(c)), None)
    for cls in env_cls.__mro__ if owner is not None else ():
        if cls is owner:
            break
        for name in ("reset", "step"):
            if name in vars(cls):
                return f"{cls.__name__} overrides {name}() of the view of its batched core"
    return None


def batched_reason(experiment: ExperimentConfig, batched_sampling: bool) -> str | None:
    """Why the batched runner cannot run an experiment, or None when it can."""
    from rl_platform.sampling import unsupported_reason

    if not batched_sampling:
        return f"algorithm {experiment.algorithm.id!r} does not support it"
    if experiment.hierarchy is not None:
        return "a hierarchy: section acts through strategies above the env core"
    reason = unsupported_reason(experiment)
    if reason is None:
        reason = view_override(registry.get_env(experiment.env.id).load())
    return reason


def choose_sampler(
    experiment: ExperimentConfig, batched_sampling: bool | None = None
) -> SamplerChoice:
    """The env runner ``resources.sampler`` gives this experiment.

    ``auto`` (the default) and ``batched`` take the batched runner wherever it can run
    the experiment (:func:`batched_reason`) and the stock runner otherwise, with the
    reason; ``stock`` takes the stock runner. ``batched_sampling`` is the algorithm's flag
    (looked up when None).
    """
    res = experiment.resources
    if res.sampler == "stock":
        return SamplerChoice(res.sampler, "stock", res.num_envs_per_env_runner)
    if batched_sampling is None:
        batched_sampling = registry.ALGORITHMS[experiment.algorithm.id].load().batched_sampling
    reason = batched_reason(experiment, batched_sampling)
    runner = "batched" if reason is None else "stock"
    return SamplerChoice(res.sampler, runner, res.num_envs_per_env_runner, reason)


def with_sampler(
    config: AlgorithmConfig, experiment: ExperimentConfig, batched_sampling: bool
) -> AlgorithmConfig:
    """Use the batched env runner where :func:`choose_sampler` picks it (a log line says which).

    ``batched_sampling`` says whether the algorithm samples through stock connectors and
    its modules' action distributions or their own actions (the PPO family; IQL, VDN and
    QMIX's epsilon-greedy), which the batched runner reproduces.
    """
    choice = choose_sampler(experiment, batched_sampling)
    line = choice.line()
    if line is not None:
        log.info("%s", line)
    if choice.runner != "batched":
        return config
    from rl_platform.sampling import BatchedEnvRunner

    return config.env_runners(env_runner_cls=BatchedEnvRunner)


def with_rllib_options(
    config: AlgorithmConfig, experiment: ExperimentConfig, hyperparam_names: Any
) -> AlgorithmConfig:
    """Set ``algorithm.rllib``'s settings on the algorithm's RLlib config, last of all.

    Each key must be a setting of the config's class (an attribute of a new config of it);
    one the experiment sets elsewhere is refused with the field to use
    (:func:`rl_platform.config.algorithms.rllib_option_problem`).

    Raises:
        ConfigError: a key RLlib's config does not have (with close matches) or one the
            experiment sets elsewhere.
    """
    import difflib

    from rl_platform.config.algorithms import rllib_option_problem

    options = experiment.algorithm.rllib
    if not options:
        return config
    known = sorted(k for k in vars(type(config)()) if not k.startswith("_"))
    for key in options:
        where = f"{experiment.name}: algorithm.rllib.{key}"
        problem = rllib_option_problem(key, hyperparam_names)
        if problem:
            raise ConfigError(f"{where}: {problem}.")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "."
            raise ConfigError(
                f"{where}: RLlib's {type(config).__name__} has no setting {key!r}{hint}"
            )
    return config.update_from_dict(dict(options))


def apply_experiment(
    config: AlgorithmConfig,
    experiment: ExperimentConfig,
    env_cls: type,
    active: list[Feature] | None = None,
) -> AlgorithmConfig:
    """Set everything an experiment decides on an algorithm's (new-stack) RLlib config.

    The env runners build the experiment's env inside the features' runner env
    (:class:`~rl_platform.rewards.RewardEnv`, the reward engineering, whatever the
    algorithm; with a ``hierarchy`` section, :mod:`rl_platform.advanced.hierarchical`'s
    env around it); the callbacks are the features'.
    """
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    active = features() if active is None else active
    res = experiment.resources
    network = experiment.algorithm.network
    return (
        config.api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(env=runner_env(experiment, active), env_config=reward_env_config(experiment))
        .env_runners(
            num_env_runners=res.num_env_runners,
            num_envs_per_env_runner=res.num_envs_per_env_runner,
            num_cpus_per_env_runner=res.num_cpus_per_env_runner,
            rollout_fragment_length=res.rollout_fragment_length,
        )
        .learners(
            num_learners=res.num_learners,
            num_cpus_per_learner=res.num_cpus_per_learner,
            num_gpus_per_learner=res.num_gpus_per_learner,
        )
        .multi_agent(
            policies=set(module_ids(experiment, env_cls)),
            policy_mapping_fn=policy_mapping(experiment, env_cls),
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
            callbacks_class=experiment_callbacks(experiment, active),
            on_checkpoint_loaded=sync_env_runner_weights,
        )
        .fault_tolerance(
            restart_failed_env_runners=True,
            max_num_env_runner_restarts=res.max_env_runner_restarts,
            delay_between_env_runner_restarts_s=1.0,
        )
    )


def build_algorithm_config(experiment: ExperimentConfig) -> AlgorithmConfig:
    """The one builder train, tune and submit share: experiment -> RLlib config.

    Raises:
        ConfigError: the algorithm cannot train on the env, or RLlib refuses the
            combination of settings (e.g. a minibatch larger than the train batch).
    """
    env_cls = registry.get_env(experiment.env.id).load()
    algorithm = registry.ALGORITHMS[experiment.algorithm.id].load()
    hyperparams = algorithm.Hyperparams.model_validate(experiment.algorithm.hyperparams)
    context = BuildContext(experiment, env_cls, env_config_of(experiment))
    algorithm.check(hyperparams, context)
    active = features()
    config = apply_experiment(algorithm.new_config(), experiment, env_cls, active)
    if algorithm.global_state:
        agent_id = hyperparams.agent_id_in_obs and shares_modules(experiment, env_cls)
        config = with_global_state(config, experiment, agent_id, algorithm.module_spaces)
    config = algorithm.configure(config, hyperparams, context)
    for feature in active:
        config = feature.configure(config, experiment, env_cls)
    config = with_rllib_options(config, experiment, type(hyperparams).model_fields)
    config = with_sampler(config, experiment, algorithm.batched_sampling)
    try:
        config.validate()
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"{experiment.name}: RLlib refused the algorithm config: {err}") from None
    return config
