"""A constraint shield: any policy's actions, filtered so that declared limits hold.

A :class:`Shield` built from a :class:`SafetySpec` replaces an agent's action that breaks
one of the env core's constraints (``BatchedCore.constraints``) by the fallback's, and
logs each intervention (:class:`InterventionLog`); its judge checks constraints from the
env state (:data:`STATE`) or from observations alone (:data:`OBSERVATIONS`). It works on
batched arrays (:class:`ShieldedPolicy`) and on one step's action dict
(:func:`shield_action_dict`). How it decides: docs/monitoring.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rl_platform.config import ConstraintSpec, SafetySpec  # noqa: F401 (part of this API)
from rl_platform.envs.base import BatchedCore, agent_ids, validate_actions

DEFAULT_FALLBACK = "default"  # the env's default action as the fallback policy
MAX_LOG_ENTRIES = 10_000  # entries kept in full; counts cover every intervention


def _core_class(env_cls: type) -> type:
    """The core class of a view class (``core_cls``), or `env_cls` itself."""
    return getattr(env_cls, "core_cls", env_cls)


def check_safety(spec: SafetySpec, env_cls: type) -> None:
    """Refuse a spec that names a constraint or fallback `env_cls` does not have.

    Args:
        spec: the safety section.
        env_cls: a registered env class (a view with ``core_cls``) or a core class.

    Raises:
        ValueError: naming the bad entry and listing what the env offers.
    """
    core_cls = _core_class(env_cls)
    declared: dict[str, str] = dict(getattr(core_cls, "constraints", {}))
    baselines: tuple[str, ...] = tuple(getattr(core_cls, "baselines", ()))
    for i, constraint in enumerate(spec.constraints):
        if constraint.name not in declared:
            offered = (
                "; ".join(f"{n}: {d}" for n, d in declared.items())
                if declared
                else "none: this env declares no constraints"
            )
            raise ValueError(
                f"safety.constraints[{i}].name: unknown constraint {constraint.name!r} for "
                f"{env_cls.__name__}; its constraints are: {offered}."
            )
    if spec.fallback is not None and spec.fallback != DEFAULT_FALLBACK:
        if spec.fallback not in baselines:
            raise ValueError(
                f"safety.fallback: unknown fallback {spec.fallback!r} for {env_cls.__name__}; "
                f"expected one of its baselines ({', '.join(baselines) or 'none'}) or "
                f"{DEFAULT_FALLBACK!r} (its default action)."
            )


def fallback_name(spec: SafetySpec, env_cls: type) -> str:
    """The fallback policy the spec resolves to: a baseline name or ``"default"``."""
    if spec.fallback is not None:
        return spec.fallback
    baselines = tuple(getattr(_core_class(env_cls), "baselines", ()))
    return baselines[0] if baselines else DEFAULT_FALLBACK


@dataclass(frozen=True)
class InterventionEntry:
    """One agent's action replaced because it broke one constraint (one JSONL line).

    ``step`` counts the shield's filter calls from 0, ``copy`` is the batch index,
    ``original`` and ``replacement`` the actions as lists (or numbers, for discrete
    actions); ``unresolved`` is true when the replacement breaks a constraint too.
    """

    step: int
    copy: int
    agent: str
    constraint: str
    limit: float
    original: Any
    replacement: Any
    unresolved: bool

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class Interventions:
    """What one :meth:`Shield.filter` call did; arrays are indexed (copy, agent).

    ``violated[b, i, c]``: agent i's original action broke ``constraints[c]``; ``mask``:
    its action was replaced; ``used_default``: by the default action (the fallback's
    broke a constraint too); ``unresolved``: even the default breaks one.
    """

    step: int
    constraints: tuple[str, ...]
    limits: tuple[float, ...]
    violated: np.ndarray  # (B, N, C) bool
    mask: np.ndarray  # (B, N) bool
    used_default: np.ndarray  # (B, N) bool
    unresolved: np.ndarray  # (B, N) bool
    original: np.ndarray  # (B, N, *action_shape)
    applied: np.ndarray  # (B, N, *action_shape)
    present: np.ndarray | None = None  # (B, N) bool: the agents judged; None: all

    @property
    def count(self) -> int:
        """Agents whose action was replaced."""
        return int(self.mask.sum())

    def penalties(self, penalty: float) -> np.ndarray:
        """(B, N) float32: `penalty` for each agent whose action was replaced, else 0."""
        return self.mask.astype(np.float32) * np.float32(penalty)

    def entries(self, limit: int | None = None) -> list[InterventionEntry]:
        """Log entries, one per (replaced agent, constraint it broke), the first `limit`."""
        out: list[InterventionEntry] = []
        for b, i, c in np.argwhere(self.violated & self.mask[..., None]):
            if limit is not None and len(out) >= limit:
                break
            out.append(
                InterventionEntry(
                    step=self.step,
                    copy=int(b),
                    agent=f"agent_{int(i)}",
                    constraint=self.constraints[c],
                    limit=self.limits[c],
                    original=np.asarray(self.original[b, i]).tolist(),
                    replacement=np.asarray(self.applied[b, i]).tolist(),
                    unresolved=bool(self.unresolved[b, i]),
                )
            )
        return out


@dataclass
class InterventionLog:
    """Interventions of a shield: the first ``max_entries`` in full, counts of all.

    ``counts[name]`` counts (agent, step) pairs whose action broke constraint ``name``;
    ``interventions`` counts replaced actions (one per agent and step, however many
    constraints it broke); ``agent_steps`` counts every agent action the shield saw.
    """

    max_entries: int = MAX_LOG_ENTRIES
    entries: list[InterventionEntry] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    interventions: int = 0
    unresolved: int = 0
    agent_steps: int = 0
    dropped: int = 0  # entries beyond max_entries, counted but not kept

    @property
    def rate(self) -> float:
        """Interventions per agent-step (0.0 before any step)."""
        return self.interventions / self.agent_steps if self.agent_steps else 0.0

    def record(self, interventions: Interventions) -> None:
        """Add one filter call's interventions."""
        present = interventions.present
        self.agent_steps += interventions.mask.size if present is None else int(present.sum())
        for name in interventions.constraints:
            self.counts.setdefault(name, 0)
        if not interventions.mask.any():
            return
        broke = (interventions.violated & interventions.mask[..., None]).sum(axis=(0, 1))
        for name, n in zip(interventions.constraints, broke.tolist()):
            self.counts[name] += n
        self.interventions += interventions.count
        self.unresolved += int(interventions.unresolved.sum())
        total = int(broke.sum())
        room = self.max_entries - len(self.entries)
        if room > 0:
            self.entries.extend(interventions.entries(limit=room))
        self.dropped += total - min(total, max(room, 0))

    def summary(self) -> dict[str, Any]:
        """Counts and rate as JSON-ready data (for evaluation reports)."""
        return {
            "interventions": self.interventions,
            "agent_steps": self.agent_steps,
            "rate": self.rate,
            "unresolved": self.unresolved,
            "counts": dict(self.counts),
            "entries_kept": len(self.entries),
            "entries_dropped": self.dropped,
        }

    def to_jsonl(self, path: str | Path) -> Path:
        """Write the kept entries, one JSON object a line; returns the path."""
        path = Path(path)
        with path.open("w", encoding="utf-8") as f:
            for entry in self.entries:
                f.write(json.dumps(entry.to_dict()) + "\n")
        return path

    @staticmethod
    def read_jsonl(path: str | Path) -> list[InterventionEntry]:
        """Entries written by :meth:`to_jsonl`."""
        with Path(path).open(encoding="utf-8") as f:
            return [InterventionEntry(**json.loads(line)) for line in f if line.strip()]


class UnjudgedConstraint(NotImplementedError):
    """A judge cannot judge constraint ``constraint`` of this env (the message says why)."""

    def __init__(self, constraint: str, message: str) -> None:
        super().__init__(message)
        self.constraint = constraint


class StateJudge:
    """Judges actions against the env state: ``core.constraint_violations``.

    For training and evaluation: the shield sits beside the env whose state the actions
    are for.
    """

    name = "state"

    def check(self, core: BatchedCore, names: tuple[str, ...], limits: tuple[float, ...]) -> None:
        """Every constraint a core declares can be judged from its state."""

    def __call__(
        self, core: BatchedCore, name: str, limit: float, obs: np.ndarray | None, actions: Any
    ) -> np.ndarray:
        """(B, N) bool: which agents' actions break constraint `name` in `core`'s state."""
        return core.constraint_violations(name, limit, actions)


class ObservationJudge:
    """Judges actions from observations alone: ``core.observed_violations``.

    For serving: the server keeps no env state; `core` only reads the observations it
    is given.
    """

    name = "observations"

    def check(self, core: BatchedCore, names: tuple[str, ...], limits: tuple[float, ...]) -> None:
        """Raise :class:`UnjudgedConstraint` for one `core` cannot judge from observations."""
        probe = np.zeros((1, core.num_agents, *core.observation_space.shape), np.float32)
        default = core.default_actions(probe)
        for name, limit in zip(names, limits):
            try:
                core.observed_violations(name, limit, probe, default)
            except NotImplementedError as err:
                raise UnjudgedConstraint(name, str(err)) from None

    def __call__(
        self, core: BatchedCore, name: str, limit: float, obs: np.ndarray | None, actions: Any
    ) -> np.ndarray:
        """(B, N) bool: which agents' actions break constraint `name`, given observations."""
        if obs is None:
            raise ValueError("judging from observations needs the observations")
        return core.observed_violations(name, limit, obs, actions)


Judge = StateJudge | ObservationJudge
STATE = StateJudge()
OBSERVATIONS = ObservationJudge()


class Shield:
    """Filters batched actions of `core` so that the spec's constraints hold.

    Args:
        core: the env core the actions are for (its current state is what is checked,
            or, judged from observations, a core whose spaces, baselines and default
            action are used).
        spec: constraints, fallback and switch; validated against the core's class.
        max_entries: log entries kept in full.
        judge: how a constraint is judged: :data:`STATE` (the core's state, the
            default) or :data:`OBSERVATIONS` (the observations the filter is given).

    Raises:
        ValueError: the spec names an unknown constraint or fallback.
        UnjudgedConstraint: the judge cannot judge one of the spec's constraints.
    """

    def __init__(
        self,
        core: BatchedCore,
        spec: SafetySpec,
        max_entries: int = MAX_LOG_ENTRIES,
        judge: Judge = STATE,
    ) -> None:
        check_safety(spec, type(core))
        self.core = core
        self.spec = spec
        self.judge = judge
        self.fallback = fallback_name(spec, type(core))
        self.log = InterventionLog(max_entries=max_entries)
        self._names = tuple(c.name for c in spec.constraints)
        self._limits = tuple(float(c.limit) for c in spec.constraints)
        self._steps = 0
        judge.check(core, self._names, self._limits)

    @classmethod
    def for_env(cls, env: Any, spec: SafetySpec, max_entries: int = MAX_LOG_ENTRIES) -> Shield:
        """A shield on the core of a single-copy view (or a wrapper around one)."""
        return cls(core_of(env), spec, max_entries)

    def violations(self, actions: np.ndarray, obs: np.ndarray | None = None) -> np.ndarray:
        """(B, N, C) bool: which agents' actions break which of the spec's constraints.

        `obs` (B, N, obs_dim): the observations, which a judge from observations needs.
        """
        out = np.zeros((*np.shape(actions)[:2], len(self._names)), dtype=bool)
        for c, (name, limit) in enumerate(zip(self._names, self._limits)):
            out[..., c] = self.judge(self.core, name, limit, obs, actions)
        return out

    def fallback_actions(self, obs: np.ndarray) -> np.ndarray:
        """The fallback policy's actions (B, N, *action_shape) for observations obs."""
        if self.fallback == DEFAULT_FALLBACK:
            return self.core.default_actions(obs)
        return self.core.baseline_actions(self.fallback, obs)

    def filter(
        self, obs: np.ndarray, actions: np.ndarray, present: np.ndarray | None = None
    ) -> tuple[np.ndarray, Interventions]:
        """Safe actions for observations obs (B, N, obs_dim) and actions (B, N, ...).

        Call it in the state the actions are for, before the step. Returns `actions`
        itself when no agent is replaced (or the shield is disabled), else a copy with
        the violating agents' actions replaced; and the record of what was done, also
        appended to :attr:`log`. `present` (B, N) bool: only these agents are judged
        and counted (the others are padding); None: all.
        """
        actions = np.asarray(actions)
        b, n = actions.shape[:2]
        step = self._steps
        self._steps += 1
        if self.spec.enabled and self._names:
            violated = self.violations(actions, obs)
            if present is not None:
                violated &= present[..., None]
            mask = violated.any(axis=-1)
        else:
            violated = np.zeros((b, n, len(self._names)), dtype=bool)
            mask = np.zeros((b, n), dtype=bool)
        used_default = np.zeros((b, n), dtype=bool)
        unresolved = used_default.copy()
        safe = actions
        if mask.any():
            safe = actions.copy()
            safe[mask] = self.fallback_actions(obs).astype(actions.dtype, copy=False)[mask]
            used_default = self.violations(safe, obs).any(axis=-1) & mask
            if used_default.any():
                default = np.broadcast_to(self.core.default_action(), safe.shape[2:])
                safe[used_default] = default
                unresolved = self.violations(safe, obs).any(axis=-1) & used_default
        record = Interventions(
            step=step,
            constraints=self._names,
            limits=self._limits,
            violated=violated,
            mask=mask,
            used_default=used_default,
            unresolved=unresolved,
            original=actions,
            applied=safe,
            present=present,
        )
        self.log.record(record)
        return safe, record

    def summary(self) -> dict[str, Any]:
        """Settings and counts as JSON-ready data (a server's /v1/info)."""
        return {
            "enabled": self.spec.enabled,
            "constraints": [{"name": n, "limit": v} for n, v in zip(self._names, self._limits)],
            "fallback": self.fallback,
            "judged_from": self.judge.name,
            "interventions": self.log.interventions,
            "unresolved": self.log.unresolved,
            "agent_steps": self.log.agent_steps,
            "counts": {name: self.log.counts.get(name, 0) for name in self._names},
        }


class ShieldedPolicy:
    """A batched policy ``act(obs) -> actions`` whose actions pass through a shield.

    Call it in the state the observations were taken in (before the step), as
    ``core.play_episodes`` and the evaluation loops do; :attr:`last` holds the latest
    call's :class:`Interventions` and ``shield.log`` all of them.
    """

    def __init__(self, act: Callable[[np.ndarray], np.ndarray], shield: Shield) -> None:
        self.act = act
        self.shield = shield
        self.last: Interventions | None = None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Safe actions (B, N, *action_shape) for observations (B, N, obs_dim)."""
        safe, self.last = self.shield.filter(obs, self.act(obs))
        return safe

    @property
    def log(self) -> InterventionLog:
        """The shield's intervention log."""
        return self.shield.log


def core_of(env: Any) -> BatchedCore:
    """The batched core behind a single-copy view, or behind wrappers of one.

    Follows ``core``, then ``inner``, ``env`` or ``_env`` attributes (reward and
    global-state wrappers, the PettingZoo view).
    """
    seen = 0
    while not isinstance(getattr(env, "core", None), BatchedCore):
        inner = next((getattr(env, a) for a in ("inner", "env", "_env") if hasattr(env, a)), None)
        seen += 1
        if inner is None or seen > 16:
            raise TypeError(f"{type(env).__name__} has no platform env core to shield")
        env = inner
    return env.core


def shield_action_dict(
    env: Any, action_dict: dict[str, Any], shield: Shield
) -> tuple[dict[str, Any], list[InterventionEntry]]:
    """Shield one step's actions of a single-copy view, before ``env.step``.

    The fallback sees the view's current observation (``core.observe()``). Agents whose
    actions comply keep the very objects passed in.

    Args:
        env: a single-copy view (or a wrapper of one) whose core `shield` was built on
            (:meth:`Shield.for_env`).
        action_dict: agent id -> action, as ``env.step`` takes it.
        shield: the shield.

    Returns:
        The actions to step with, and this step's log entries (also in ``shield.log``).
    """
    core = core_of(env)
    if core is not shield.core:
        raise ValueError("the shield was built on another env's core; use Shield.for_env(env)")
    ids = agent_ids(core.num_agents)
    actions = validate_actions(action_dict, ids, core.action_space)
    safe, record = shield.filter(core.observe(), actions)
    entries = record.entries()
    replaced = {ids[i]: safe[0, i] for i in np.flatnonzero(record.mask[0])}
    return {a: replaced.get(a, action_dict[a]) for a in action_dict}, entries


def violation_rate(
    core: BatchedCore,
    act: Callable[[np.ndarray], np.ndarray],
    steps: int,
    rng: np.random.Generator,
    spec: SafetySpec,
) -> dict[str, float]:
    """Share of agent-steps in which the unshielded `act` breaks each constraint.

    Resets every copy, then plays `steps` batched steps (copies whose episode ended are
    reset) and checks each action before it is applied.

    Returns:
        constraint name -> violations per agent-step, and ``"any"``: the share of
        agent-steps breaking at least one.
    """
    check_safety(spec, type(core))
    shield = Shield(core, spec, max_entries=0)
    core.reset(rng)
    counts = np.zeros(len(spec.constraints))
    any_count = 0
    for _ in range(steps):
        actions = act(core.observe())
        violated = shield.violations(np.asarray(actions))
        counts += violated.sum(axis=(0, 1))
        any_count += int(violated.any(axis=-1).sum())
        result = core.step(actions, rng)
        done = result.terminated | result.truncated
        if done.any():
            core.reset(rng, mask=done)
    agent_steps = max(steps * core.batch_size * core.num_agents, 1)
    rates = {c.name: float(k / agent_steps) for c, k in zip(spec.constraints, counts)}
    rates["any"] = any_count / agent_steps
    return rates
