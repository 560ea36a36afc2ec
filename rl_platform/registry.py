"""Name -> env class and name -> algorithm module: the platform's only lookup tables.

Entries name their implementation by import path so that listing ids (`rlp envs list`)
and reading the schema never import Ray or torch. Adding an env or an algorithm is one
line here plus its own file.

An env class registered here is an RLlib ``MultiAgentEnv`` that also declares
``config_model`` (a pydantic model of its constructor arguments), ``reward_components``
and ``task_levels``, and offers ``parallel_env(**config)`` for PettingZoo.

An algorithm module registered here defines ``Hyperparams`` (a pydantic model) and
``build(experiment, env_cls) -> AlgorithmConfig``.

Ids from files only select entries of these tables; the one id that names a module,
``pettingzoo:<module>:<factory>``, is checked against :mod:`rl_platform.trust`'s
allow-list before anything is imported.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from rl_platform.trust import check_env_factory


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

    def load(self) -> Any:
        """Import what defines ``Hyperparams`` and ``build``: ``pkg.mod`` or ``pkg.mod:Name``."""
        module, _, name = self.module.partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, name) if name else loaded


ENVS: dict[str, EnvEntry] = {}
ALGORITHMS: dict[str, AlgorithmEntry] = {}


def register_env(entry: EnvEntry) -> None:
    """Add an env (plugins and tests use this; the built-ins are registered below)."""
    ENVS[entry.id] = entry


PETTINGZOO_PREFIX = "pettingzoo:"


def get_env(env_id: str) -> EnvEntry | None:
    """The entry of a registered env id or of a ``pettingzoo:<module>:<factory>`` id.

    Returns None for an unknown id.

    Raises:
        UntrustedModuleError: a ``pettingzoo:`` id names a module or factory outside the
            allow-list (:func:`rl_platform.trust.check_env_factory`); nothing is imported.
    """
    if env_id.startswith(PETTINGZOO_PREFIX):
        check_env_factory(env_id, PETTINGZOO_PREFIX)
        return EnvEntry(
            env_id,
            "a PettingZoo env through the adapter",
            "rl_platform.envs.pettingzoo:PettingZooEnv",
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
        "rl_platform.algorithms.ppo",
    )
)

register_algorithm(
    AlgorithmEntry(
        "mappo",
        "MAPPO: decentralized actors, centralized critics on the global state, value norm",
        "rl_platform.algorithms.mappo:MAPPO",
    )
)
register_algorithm(
    AlgorithmEntry(
        "ippo",
        "IPPO: the MAPPO actor-critics with critics on each agent's own observation",
        "rl_platform.algorithms.mappo:IPPO",
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
