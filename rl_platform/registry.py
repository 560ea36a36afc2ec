"""Name -> env, algorithm and feature: the platform's only lookup tables.

Entries name their implementation by import path, so listing ids (``rlp envs list``) and
reading the schema never import Ray or torch. Envs (RLlib ``MultiAgentEnv`` classes with
a config model, reward components and task levels), algorithms (:class:`Algorithm`) and
features (:class:`Feature`) are one line here plus their own file;
:mod:`rl_platform.builder` composes them. ``pettingzoo:<module>:<factory>`` ids are
checked against :mod:`rl_platform.trust` first, ``vmas:<scenario>`` ids against VMAS's
scenario files (found without importing vmas). Details: docs/architecture.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from rl_platform.trust import UntrustedModuleError, check_env_class, check_env_factory

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from rl_platform.config import ExperimentConfig


@dataclass(frozen=True)
class EnvEntry:
    """A registered environment: its id, a one-line description, where the class lives."""

    id: str
    description: str
    target: str | type  # "package.module:ClassName", or the class itself (plugins, tests)
    # Constructor config the entry fixes (not the user's): merged under env.config.
    bound_config: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        """Import and return the env class."""
        if not isinstance(self.target, str):
            return self.target
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class AlgorithmEntry:
    """A registered algorithm: its id, a one-line description, its module."""

    id: str
    description: str
    module: str

    def load(self) -> type[Algorithm]:
        """Import the algorithm class (``pkg.mod:Name``)."""
        return _load(self.module)


def _load(target: str) -> Any:
    """The object a ``pkg.mod:name`` import path names (the module for ``pkg.mod``)."""
    module, _, name = target.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, name) if name else loaded


class Algorithm(Protocol):
    """What a registered algorithm tells the builder (:mod:`rl_platform.builder`).

    The registered object is the class; its hooks are classmethods. The builder makes
    ``new_config()``, sets the experiment's part (env, runners, policies, network, seed,
    callbacks), wraps the env in ``GlobalStateEnv`` when ``global_state`` says so, then
    calls ``configure`` for the algorithm's own training settings and modules. An
    algorithm knows nothing of features: they configure after it.
    """

    Hyperparams: ClassVar[type]  # its pydantic hyperparameter model
    batched_sampling: ClassVar[bool] = False  # the batched env runner can sample for it
    # The env runs inside GlobalStateEnv (obs = {"obs", "state"}); with a shared policy,
    # hyperparams.agent_id_in_obs appends each agent's one-hot index to its observation.
    global_state: ClassVar[bool] = False
    # Every module gets its spaces explicitly (RLlib's local env runner cannot infer them).
    module_spaces: ClassVar[bool] = False
    discrete_only: ClassVar[bool] = False  # refuses Box actions

    @classmethod
    def new_config(cls) -> AlgorithmConfig:
        """A fresh RLlib config of the algorithm's class."""
        ...

    @classmethod
    def check(cls, hyperparams: Any, context: Any) -> None:
        """Refuse an env or settings the algorithm cannot train, before anything is built.

        ``context`` is a :class:`rl_platform.algorithms.common.BuildContext`.

        Raises:
            ConfigError: with a message naming the experiment and what to change.
        """
        return None

    @classmethod
    def configure(cls, config: AlgorithmConfig, hyperparams: Any, context: Any) -> AlgorithmConfig:
        """The config with the algorithm's training settings, modules and learner."""
        ...


class Feature(Protocol):
    """What one experiment section contributes to a run (see :data:`FEATURES`).

    Every hook is called for every experiment; a feature whose section is absent (or
    off) contributes nothing. Subclass this protocol to inherit the do-nothing defaults.
    """

    def validate(self, experiment: ExperimentConfig, env_cls: type) -> None:
        """Refuse settings the env or the algorithm cannot run.

        Raises:
            ValueError: with a message saying what is wrong and what to set instead.
        """
        return None

    def runner_env(self, experiment: ExperimentConfig) -> type | None:
        """The env class the env runners build around the experiment's env, or None.

        The last feature (in :data:`FEATURES` order) that names one wins.
        """
        return None

    def callbacks(self, experiment: ExperimentConfig) -> list[type]:
        """The RLlib callback classes the feature adds, in order."""
        return []

    def configure(
        self, config: AlgorithmConfig, experiment: ExperimentConfig, env_cls: type
    ) -> AlgorithmConfig:
        """The config with the feature's changes, after the algorithm's own."""
        return config


ENVS: dict[str, EnvEntry] = {}
ALGORITHMS: dict[str, AlgorithmEntry] = {}

# Experiment section -> its feature object, in the order the builder applies them: the
# runner env of a later one wins, callbacks run in this order (the evaluation after the
# curriculum: it reads the current level; curiosity last: it wraps the algorithm's
# modules and learner).
FEATURES: dict[str, str] = {
    "rewards": "rl_platform.rewards:FEATURE",
    "safety": "rl_platform.safety_feature:FEATURE",
    "hierarchy": "rl_platform.advanced.hierarchical:FEATURE",
    "monitoring": "rl_platform.monitoring_feature:FEATURE",
    "curriculum": "rl_platform.curriculum:FEATURE",
    "meta": "rl_platform.advanced.meta_training:FEATURE",
    "initial_policies": "rl_platform.warm_start:FEATURE",
    "evaluation": "rl_platform.evaluation.callback:FEATURE",
    "curiosity": "rl_platform.advanced.curiosity:FEATURE",
}


def load_feature(name: str) -> Feature:
    """Import the feature object of an experiment section (a key of :data:`FEATURES`)."""
    return _load(FEATURES[name])


def env_config_of(experiment: ExperimentConfig) -> dict[str, Any]:
    """The env constructor's config: the env section, what its entry fixes, the rewards.

    The reward weights and team share go into the env's own config (the env computes
    them); the rest of the ``rewards`` section is the runner env's
    (:class:`~rl_platform.rewards.RewardEnv`).
    """
    config = {**experiment.env.config, **get_env(experiment.env.id).bound_config}
    config["reward_weights"] = {**config.get("reward_weights", {}), **experiment.rewards.weights}
    if experiment.rewards.team:
        config["team_reward"] = experiment.rewards.team
    return config


def register_env(entry: EnvEntry) -> None:
    """Add an env (plugins and tests use this; the built-ins are registered below)."""
    ENVS[entry.id] = entry


PETTINGZOO_PREFIX = "pettingzoo:"
PETTINGZOO_SHORT_IDS = {
    # A PettingZoo env with action masks shipped for tests and examples.
    "masked_choice": "pettingzoo:rl_platform.envs.masked_choice:parallel_env",
    # A memory task (the cue only in the first observation) for recurrent policies.
    "memory_cue": "pettingzoo:rl_platform.envs.memory_cue:parallel_env",
}
"""Short ids of PettingZoo envs shipped with the platform (not platform envs: no core)."""
VMAS_PREFIX = "vmas:"


def install_hint(extra: str) -> str:
    """The command that installs the optional part `extra` (pyproject.toml's extras)."""
    return f"pip install -e '.[{extra}]'"


VMAS_INSTALL_HINT = install_hint("vmas")
ENV_PACKAGE_EXTRAS = {"mpe2": "mpe", "vmas": "vmas"}
"""The extra that installs each optional env package an env id may name."""
_SCENARIO_NAME = re.compile(r"[a-z0-9_]+")


@cache
def vmas_scenarios() -> tuple[str, ...] | None:
    """The scenario names VMAS's ``make_env`` accepts, or None when vmas is not installed.

    Read from its scenario files (the main, MPE and debug ones); vmas itself, which
    imports torch, is not imported.
    """
    spec = importlib.util.find_spec("vmas")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "scenarios"
    return tuple(sorted(p.stem for p in folder.rglob("*.py") if not p.stem.startswith("_")))


def check_vmas_scenario(scenario: str, env_id: str | None = None) -> None:
    """Refuse a name that is no VMAS scenario (`env_id` names it in errors); nothing is imported.

    Raises:
        UntrustedModuleError: not [a-z0-9_]+ or not one of :func:`vmas_scenarios`.
        ValueError: vmas is not installed (the message says how to install it).
    """
    if not _SCENARIO_NAME.fullmatch(scenario):
        raise UntrustedModuleError(
            env_id or scenario, "a VMAS scenario name is lowercase letters, digits and _ only"
        )
    known = vmas_scenarios()
    if known is None:
        raise ValueError(f"VMAS envs need the vmas package, not installed: {VMAS_INSTALL_HINT}")
    if scenario not in known:
        raise UntrustedModuleError(
            env_id or scenario,
            f"not a VMAS scenario; expected one of: {', '.join(known)}; nothing was imported",
        )


def env_ids() -> list[str]:
    """Every id an experiment can name as it is: the registered envs and the short ids."""
    return sorted([*ENVS, *PETTINGZOO_SHORT_IDS])


def get_env(env_id: str) -> EnvEntry | None:
    """The entry of a registered id or of an env id naming its source.

    Sources: ``pettingzoo:<module>:<factory>``, ``vmas:<scenario>`` or ``<module>:<Class>``
    (a user's RLlib ``MultiAgentEnv``, through
    :class:`rl_platform.envs.custom.CustomMultiAgentEnv`).

    Returns None for an unknown id.

    Raises:
        UntrustedModuleError: a ``pettingzoo:`` id names a module or factory outside the
            allow-list (:func:`rl_platform.trust.check_env_factory`), a ``vmas:`` id
            no VMAS scenario (:func:`check_vmas_scenario`), or a ``<module>:<Class>`` id
            an untrusted module (:func:`rl_platform.trust.check_env_class`); nothing is
            imported.
    """
    env_id = PETTINGZOO_SHORT_IDS.get(env_id, env_id)
    if env_id.startswith(PETTINGZOO_PREFIX):
        check_env_factory(env_id, PETTINGZOO_PREFIX)
        return EnvEntry(
            env_id,
            "a PettingZoo env through the adapter",
            "rl_platform.envs.pettingzoo:PettingZooEnv",
            bound_config={"source": env_id},
        )
    if env_id.startswith(VMAS_PREFIX):
        scenario = env_id.removeprefix(VMAS_PREFIX)
        # Without vmas only the name's form is checked: building the env says what to install.
        if vmas_scenarios() is not None or not _SCENARIO_NAME.fullmatch(scenario):
            check_vmas_scenario(scenario, env_id)
        return EnvEntry(
            env_id,
            f"the VMAS scenario {scenario} as a batched core",
            "rl_platform.envs.vmas:VmasEnv",
            bound_config={"scenario": scenario},
        )
    if env_id not in ENVS and ":" in env_id:  # <module>:<Class>, a user's MultiAgentEnv
        check_env_class(env_id)
        return EnvEntry(
            env_id,
            "an RLlib MultiAgentEnv of a trusted module",
            "rl_platform.envs.custom:CustomMultiAgentEnv",
            bound_config={"source": env_id},
        )
    return ENVS.get(env_id)


def register_algorithm(entry: AlgorithmEntry) -> None:
    """Add an algorithm."""
    ALGORITHMS[entry.id] = entry


register_env(
    EnvEntry(
        "rendezvous",
        "N agents on a plane meet without a leader (cooperative; continuous or discrete moves)",
        "rl_platform.envs.rendezvous:RendezvousEnv",
    )
)

register_env(
    EnvEntry(
        "meeting_point",
        "rendezvous at a meeting point the agents do not observe; 17 tasks (meta-learning)",
        "rl_platform.envs.meeting_point:MeetingPointEnv",
    )
)
register_env(
    EnvEntry(
        "trading",
        "N traders in one market with impact, costs and background traders (seed: trading)",
        "rl_platform.envs.trading:TradingEnv",
    )
)
register_env(
    EnvEntry(
        "supply_chain",
        "echelons of a serial supply chain (beer game) with lead times, modes, disruptions",
        "rl_platform.envs.supply_chain:SupplyChainEnv",
    )
)
register_env(
    EnvEntry(
        "resource_allocation",
        "N agents with changing needs share R scarce resources (satisfaction vs fairness)",
        "rl_platform.envs.resource_allocation:ResourceAllocationEnv",
    )
)
register_env(
    EnvEntry(
        "coverage",
        "N agents spread over K valued targets for one team reward (credit assignment)",
        "rl_platform.envs.coverage:CoverageEnv",
    )
)

register_env(
    EnvEntry(
        "landmark",
        "N agents find a distant landmark on a grid, rewarded only on arrival (exploration)",
        "rl_platform.envs.landmark:LandmarkEnv",
    )
)
register_env(
    EnvEntry(
        "two_step_game",
        "the QMIX paper's two-step matrix game: 2 agents, optimum 8, safe 7 (value factorization)",
        "rl_platform.envs.matrix_games:TwoStepGameEnv",
    )
)

register_algorithm(
    AlgorithmEntry(
        "ppo",
        "RLlib PPO with independent actor-critics (shared or per-agent parameters)",
        "rl_platform.algorithms.ppo:PPO",
    )
)

register_algorithm(
    AlgorithmEntry(
        "mappo",
        "MAPPO: decentralized actors, centralized critics on the global state, value norm",
        "rl_platform.algorithms.mappo_algorithm:MAPPO",
    )
)
register_algorithm(
    AlgorithmEntry(
        "ippo",
        "IPPO: the MAPPO actor-critics with critics on each agent's own observation",
        "rl_platform.algorithms.mappo_algorithm:IPPO",
    )
)
register_algorithm(
    AlgorithmEntry(
        "iql",
        "independent deep Q-learning per agent (double DQN, target nets; discrete actions)",
        "rl_platform.algorithms.iql:IQL",
    )
)
register_algorithm(
    AlgorithmEntry(
        "vdn",
        "VDN: per-agent Q networks trained on the team reward through a sum (discrete actions)",
        "rl_platform.algorithms.qmix:VDN",
    )
)
register_algorithm(
    AlgorithmEntry(
        "qmix",
        "QMIX: per-agent Q networks mixed monotonically by state hypernetworks (discrete)",
        "rl_platform.algorithms.qmix:QMIX",
    )
)
register_algorithm(
    AlgorithmEntry(
        "maddpg",
        "MADDPG: deterministic actors, centralized critics on the state and all actions",
        "rl_platform.algorithms.maddpg:MADDPG",
    )
)
