"""Which module acts for which agent: parameter sharing, one module per agent, or groups.

``algorithm.groups: {name: [agent ids or glob patterns]}`` gives one module per group,
shared by the group's agents; ``shared_policy: true`` (one module, id ``shared``) and
``shared_policy: false`` (one module per agent, named after it) are the two common
cases. :func:`agent_modules` turns either into a plain ``{agent: module id}`` mapping
(what checkpoints, evaluation and serving record) and :class:`ModuleMapping` is RLlib's
policy mapping over it: data only, picklable. Torch- and Ray-free. The rules:
docs/experiment-yaml.md ("Groups").
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any

SHARED_MODULE_ID = "shared"
GROUP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")
_GLOB_CHARS = frozenset("*?[")


class GroupError(ValueError):
    """``algorithm.groups`` does not fit the env's agents (one paragraph for people)."""


def is_pattern(entry: str) -> bool:
    """Whether a group entry is a glob pattern (``*``, ``?`` or ``[...]``), not an id."""
    return any(c in _GLOB_CHARS for c in entry)


def resolve_groups(groups: Mapping[str, Iterable[str]], agents: Iterable[str]) -> dict[str, str]:
    """``{agent: group}`` for the env's `agents`, in the env's order.

    Each entry is an agent id or a glob pattern (:func:`fnmatch.fnmatchcase`).

    Raises:
        GroupError: an entry names no agent (an unknown id, with close matches, or a
            pattern that matches none), an agent is in two groups, or an agent is in none.
    """
    agents = list(agents)
    members: dict[str, list[str]] = {a: [] for a in agents}
    problems: list[str] = []
    for name, entries in groups.items():
        for entry in entries:
            if is_pattern(entry):
                matched = [a for a in agents if fnmatch.fnmatchcase(a, entry)]
                if not matched:
                    problems.append(f"groups.{name}: the pattern {entry!r} matches no agent")
            else:
                matched = [entry] if entry in members else []
                if not matched:
                    close = difflib.get_close_matches(entry, agents, n=3)
                    hint = f" (did you mean {', '.join(close)}?)" if close else ""
                    problems.append(f"groups.{name}: {entry!r} is not an agent of the env{hint}")
            for agent in matched:
                if name not in members[agent]:
                    members[agent].append(name)
    twice = {a: g for a, g in members.items() if len(g) > 1}
    if twice:
        problems.append(
            "agents in more than one group: "
            + ", ".join(f"{a} (in {' and '.join(g)})" for a, g in twice.items())
        )
    none = [a for a, g in members.items() if not g]
    if none:
        problems.append(f"agents in no group: {', '.join(none)}")
    if problems:
        raise GroupError(
            "algorithm.groups must put every agent in exactly one group: "
            + "; ".join(problems)
            + f". The env's agents: {', '.join(agents)}."
        )
    return {a: g[0] for a, g in members.items()}


def agent_modules(
    agents: Iterable[str], shared_policy: bool, groups: Mapping[str, Iterable[str]] | None
) -> dict[str, str]:
    """``{agent: module id}``: the group's name, ``shared``, or the agent's own id.

    Raises:
        GroupError: `groups` does not fit `agents` (:func:`resolve_groups`).
    """
    if groups:
        return resolve_groups(groups, agents)
    return {a: (SHARED_MODULE_ID if shared_policy else a) for a in agents}


def modules_of(algorithm: Any, agents: Iterable[str]) -> dict[str, str]:
    """:func:`agent_modules` for an ``algorithm`` section (a model or its dict dump)."""
    get = algorithm.get if isinstance(algorithm, Mapping) else lambda k, d: getattr(algorithm, k, d)
    return agent_modules(agents, bool(get("shared_policy", True)), get("groups", None))


def module_order(mapping: Mapping[str, str]) -> list[str]:
    """The module ids of an ``{agent: module}`` mapping, each once, in agent order."""
    return list(dict.fromkeys(mapping.values()))


class ModuleMapping:
    """RLlib's ``policy_mapping_fn`` over a fixed ``{agent: module id}`` mapping.

    Data only (a dict), so it pickles to the env runners without code from the YAML.
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)

    def __call__(self, agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
        """The module of `agent_id`.

        Raises:
            KeyError: an agent the mapping was not built for.
        """
        try:
            return self.mapping[agent_id]
        except KeyError:
            raise KeyError(
                f"agent {agent_id!r} is in no group (groups cover {', '.join(self.mapping)})"
            ) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModuleMapping) and other.mapping == self.mapping

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.mapping.items())))

    def __repr__(self) -> str:
        return f"ModuleMapping({self.mapping!r})"
