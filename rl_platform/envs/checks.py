"""Conformance checks every registered env must pass (``rlp envs check`` and the tests).

:func:`check_env` runs RLlib's env check, PettingZoo's API and seed tests, determinism,
bad-input, counterfactual, potential and task-level checks; the list is in
docs/environments.md ("Checking an env").
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rl_platform import registry


@dataclass(frozen=True)
class CheckResult:
    """One named check and whether it passed (with the reason when not).

    A check that does not apply to the env is ``skipped`` (``passed`` stays true) and
    ``detail`` says why.
    """

    name: str
    passed: bool
    detail: str = ""
    skipped: bool = False


def check_env(env_id: str, config: dict[str, Any] | None = None) -> list[CheckResult]:
    """Run every conformance check on a registered env; never raises for a failing check."""
    entry = registry.get_env(env_id)
    if entry is None:
        raise KeyError(f"unknown env {env_id!r}")
    env_cls = entry.load()
    config = {**(config or {}), **entry.bound_config}
    from rl_platform.envs.base import CoreMultiAgentEnv

    checks: list[tuple[str, Callable[[], None]]] = [
        ("rllib multi-agent env check", lambda: _rllib_check(env_cls, config)),
        ("same seed, same trajectory", lambda: _determinism(env_cls, config)),
        ("NaN action refused", lambda: _nan_refused(env_cls, config)),
        ("unknown agent and step after end refused", lambda: _misuse(env_cls, config)),
    ]
    skipped: list[CheckResult] = []
    if issubclass(env_cls, CoreMultiAgentEnv):  # the platform's own envs promise more
        checks += [
            ("pettingzoo parallel_api_test", lambda: _pz_api(env_cls, config)),
            ("pettingzoo parallel_seed_test", lambda: _pz_seed(env_cls, config)),
            ("counterfactual step leaves no trace", lambda: _counterfactual(env_cls, config)),
            ("potentials finite and leave no trace", lambda: _potentials(env_cls, config)),
            ("task levels keep spaces", lambda: _task_levels(env_cls, config)),
        ]
    else:
        # A pettingzoo: id, or a registered id bound to one (masked_choice)
        source = str(config.get("source", ""))
        if env_id.startswith(registry.PETTINGZOO_PREFIX) or source.startswith(
            registry.PETTINGZOO_PREFIX
        ):
            pz_checks, pz_skipped = _pettingzoo_checks(config)
            checks += pz_checks
            skipped += pz_skipped
        else:
            skipped += [
                CheckResult(name, True, "not a PettingZoo env", skipped=True)
                for name in ("pettingzoo parallel_api_test", "pettingzoo parallel_seed_test")
            ]
        own = "only the platform's own envs have it"
        skipped += [
            CheckResult(name, True, own, skipped=True)
            for name in (
                "counterfactual step leaves no trace",
                "potentials finite and leave no trace",
                "task levels keep spaces",
            )
        ]
    results = []
    for name, check in checks:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                check()
        except Exception as err:  # noqa: BLE001 (a check reports any failure)
            results.append(CheckResult(name, False, f"{type(err).__name__}: {err}"))
        else:
            results.append(CheckResult(name, True))
    return results + skipped


def _pettingzoo_checks(
    config: dict[str, Any],
) -> tuple[list[tuple[str, Callable[[], None]]], list[CheckResult]]:
    """PettingZoo's own tests on a ``pettingzoo:<module>:<factory>`` env, and those skipped.

    The factory's env is tested as it comes: an AEC env gets ``api_test`` and
    ``seed_test`` (and ``parallel_api_test`` on its parallel conversion when PettingZoo
    can make one), a parallel env ``parallel_api_test`` and ``parallel_seed_test``.
    """
    from pettingzoo import AECEnv

    from rl_platform.envs.pettingzoo import PettingZooConfig, load_factory

    pz_config = PettingZooConfig.model_validate(config)
    factory, kwargs = load_factory(pz_config.source), pz_config.kwargs
    probe = factory(**kwargs)
    is_aec = isinstance(probe, AECEnv)
    parallelizable = is_aec and bool(probe.metadata.get("is_parallelizable", False))
    probe.close()
    if not is_aec:
        return [
            ("pettingzoo parallel_api_test", lambda: _pz_parallel_api(factory, kwargs)),
            ("pettingzoo parallel_seed_test", lambda: _pz_parallel_seed(factory, kwargs)),
        ], [
            CheckResult(
                "pettingzoo api_test",
                True,
                "the factory builds a ParallelEnv (api_test is for AEC envs)",
                skipped=True,
            )
        ]
    checks: list[tuple[str, Callable[[], None]]] = [
        ("pettingzoo api_test", lambda: _pz_aec_api(factory, kwargs)),
        ("pettingzoo seed_test", lambda: _pz_aec_seed(factory, kwargs)),
    ]
    skipped = []
    if parallelizable:
        checks.append(("pettingzoo parallel_api_test", lambda: _pz_converted_api(factory, kwargs)))
    else:
        skipped.append(
            CheckResult(
                "pettingzoo parallel_api_test",
                True,
                "a turn-based AEC env (metadata is_parallelizable is not true)",
                skipped=True,
            )
        )
    return checks, skipped


def _pz_parallel_api(factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    from pettingzoo.test import parallel_api_test

    parallel_api_test(factory(**kwargs), num_cycles=200)


def _pz_parallel_seed(factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    from pettingzoo.test import parallel_seed_test

    parallel_seed_test(lambda: factory(**kwargs))


def _pz_aec_api(factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    from pettingzoo.test import api_test

    api_test(factory(**kwargs), num_cycles=200)


def _pz_aec_seed(factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    from pettingzoo.test import seed_test

    seed_test(lambda: factory(**kwargs))


def _pz_converted_api(factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    from pettingzoo.test import parallel_api_test
    from pettingzoo.utils.conversions import aec_to_parallel

    parallel_api_test(aec_to_parallel(factory(**kwargs)), num_cycles=200)


def _rllib_check(env_cls: type, config: dict[str, Any]) -> None:
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    check_multiagent_environments(env_cls(config))


def _pz_api(env_cls: type, config: dict[str, Any]) -> None:
    from pettingzoo.test import parallel_api_test

    parallel_api_test(env_cls.parallel_env(**config), num_cycles=200)


def _pz_seed(env_cls: type, config: dict[str, Any]) -> None:
    from pettingzoo.test import parallel_seed_test

    parallel_seed_test(lambda: env_cls.parallel_env(**config))


def rollout(env: Any, seed: int, steps: int, action_seed: int = 0) -> list[Any]:
    """Observations and rewards of `steps` random-action steps (resetting at episode ends)."""
    obs, _ = env.reset(seed=seed)
    spaces = {a: env.action_spaces[a] for a in env.possible_agents}
    for i, space in enumerate(spaces.values()):
        space.seed(action_seed + i)
    trace = [obs]
    for _ in range(steps):
        actions = {a: spaces[a].sample() for a in env.agents}
        obs, rewards, terms, truncs, _ = env.step(actions)
        trace += [obs, rewards]
        if terms["__all__"] or truncs["__all__"]:
            obs, _ = env.reset()
            trace.append(obs)
    return trace


def _determinism(env_cls: type, config: dict[str, Any]) -> None:
    first = rollout(env_cls(config), seed=7, steps=60)
    second = rollout(env_cls(config), seed=7, steps=60)
    for a, b in zip(first, second, strict=True):
        for key in a:
            if not _equal(a[key], b[key]):
                raise AssertionError(f"trajectories differ at {key!r}")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return np.array_equal(np.asarray(a), np.asarray(b))


def _nan_refused(env_cls: type, config: dict[str, Any]) -> None:
    env = env_cls(config)
    env.reset(seed=0)
    actions = {a: env.action_spaces[a].sample() for a in env.agents}
    victim = env.agents[-1]
    actions[victim] = np.full(np.shape(actions[victim]) or (), np.nan)
    try:
        env.step(actions)
    except ValueError as err:
        if victim not in str(err):
            raise AssertionError(f"the error does not name the agent: {err}") from None
        return
    raise AssertionError("a NaN action was accepted")


def _task_levels(env_cls: type, config: dict[str, Any]) -> None:
    env = env_cls(config)
    spaces = (env.observation_spaces, env.action_spaces, env.state_space)
    for level in env_cls.task_levels:
        env.set_task(level)
        env.reset(seed=0)
        if env.get_task() != level:
            raise AssertionError(f"set_task({level!r}) then get_task() gave {env.get_task()!r}")
        if (env.observation_spaces, env.action_spaces, env.state_space) != spaces:
            raise AssertionError(f"spaces changed at level {level!r}")
        if not env.state_space.contains(env.state()):
            raise AssertionError(f"state() is outside state_space at level {level!r}")


def _misuse(env_cls: type, config: dict[str, Any]) -> None:
    env = env_cls(config)
    env.reset(seed=0)
    actions = {a: env.action_spaces[a].sample() for a in env.agents}
    try:
        env.step({**actions, "intruder": actions[env.agents[0]]})
    except ValueError as err:
        if "intruder" not in str(err):
            raise AssertionError(f"the error does not name the unknown agent: {err}") from None
    else:
        raise AssertionError("an unknown agent id was accepted")
    done, steps = False, 0
    while not done and steps < 100_000:
        actions = {a: env.action_spaces[a].sample() for a in env.agents}
        _, _, terms, truncs, _ = env.step(actions)
        done, steps = terms["__all__"] or truncs["__all__"], steps + 1
    try:
        env.step(actions)
    except RuntimeError:
        return
    raise AssertionError("step() after the end of the episode was accepted")


def _counterfactual(env_cls: type, config: dict[str, Any]) -> None:
    def probe(env: Any, step: int, actions: dict[str, Any]) -> None:
        for agent in env.possible_agents:
            env.counterfactual_rewards(actions, agent)

    _probed_twins(env_cls, config, probe, "a counterfactual probe", seed=3, steps=5)


def _probed_twins(
    env_cls: type,
    config: dict[str, Any],
    probe: Callable[[Any, int, dict[str, Any]], None],
    what: str,
    seed: int,
    steps: int,
) -> Any:
    """Step two same-seed envs alike, probing the second; raise if a probe changed a step.

    ``probe(env, step, actions)`` runs on the second env before each of `steps` steps.

    Returns:
        The probed env.
    """
    plain, probed = env_cls(config), env_cls(config)
    plain.reset(seed=seed)
    probed.reset(seed=seed)
    for space in plain.action_spaces.values():
        space.seed(seed)
    for step in range(steps):
        actions = {a: s.sample() for a, s in plain.action_spaces.items()}
        probe(probed, step, actions)
        first, second = plain.step(actions), probed.step(actions)
        _same_step(first, second, what)
        if first[2]["__all__"] or first[3]["__all__"]:  # short episodes: go on in a new one
            plain.reset()
            probed.reset()
    return probed


def _same_step(first: tuple, second: tuple, probe: str) -> None:
    """Raise unless two step() results have the same observations and rewards."""
    for a, b in zip(first[:2], second[:2], strict=True):
        for key in a:
            if not np.array_equal(np.asarray(a[key]), np.asarray(b[key])):
                raise AssertionError(f"{probe} changed the step ({key!r})")


def _potentials(env_cls: type, config: dict[str, Any]) -> None:
    def probe(env: Any, step: int, actions: dict[str, Any]) -> None:
        for name in env_cls.potentials:
            _check_potential(env, name, "after reset" if step == 0 else f"after step {step}")

    probed = _probed_twins(env_cls, config, probe, "reading the potentials", seed=5, steps=4)
    try:
        probed.potential("no_such_potential")
    except ValueError as err:
        missing = [name for name in env_cls.potentials if name not in str(err)]
        if missing:
            raise AssertionError(f"the error does not list {missing}: {err}") from None
        return
    raise AssertionError("an undeclared potential name was accepted")


def _check_potential(env: Any, name: str, when: str) -> None:
    """Raise unless potential `name` is a finite float per agent ((1, N) float32 in the core)."""
    values = env.potential(name)
    if list(values) != list(env.possible_agents):
        raise AssertionError(f"potential {name!r} {when}: agents {list(values)}")
    for agent, value in values.items():
        if not isinstance(value, float) or not np.isfinite(value):
            raise AssertionError(f"potential {name!r} {when}: {value!r} for {agent}")
    raw = env.core.potential(name)
    if raw.shape != (1, len(values)) or raw.dtype != np.float32:
        raise AssertionError(f"potential {name!r} {when}: core gives {raw.dtype} {raw.shape}")


# --------------------------------------------------------------------------- throughput


def _median_rate(step: Any, seconds: float, chunk: int) -> float:
    """Calls of ``step()`` per second: the median over chunks of ``chunk`` calls.

    The median of short windows is robust to other processes taking the core for a
    while, which a single long window is not.
    """
    import time

    rates, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        started = time.perf_counter()
        for _ in range(chunk):
            step()
        rates.append(chunk / (time.perf_counter() - started))
    return float(np.median(rates))


def view_steps_per_second(env_id: str, config: dict[str, Any] | None = None, seconds=1.0) -> float:
    """Env steps/s of the single-copy RLlib view, stepping pre-sampled random actions."""
    entry = registry.get_env(env_id)
    env = entry.load()({**(config or {}), **entry.bound_config})
    env.reset(seed=0)
    for i, space in enumerate(env.action_spaces.values()):
        space.seed(i)
    pool = [{a: env.action_spaces[a].sample() for a in env.possible_agents} for _ in range(256)]
    count = [0]

    def step() -> None:
        actions = pool[count[0] % len(pool)]
        count[0] += 1
        if len(env.agents) != len(actions):  # agents left (PettingZoo envs)
            actions = {a: actions[a] for a in env.agents}
        _, _, terms, truncs, _ = env.step(actions)
        if terms["__all__"] or truncs["__all__"]:
            env.reset()

    return _median_rate(step, seconds, chunk=200)


def core_agent_steps_per_second(
    env_id: str, config: dict[str, Any] | None = None, batch_size: int = 1024, seconds=1.0
) -> float:
    """Agent steps/s of an env's batched core over `batch_size` copies (step + observe)."""
    entry = registry.get_env(env_id)
    env_cls = entry.load()
    config = {**(config or {}), **entry.bound_config}
    core = env_cls.core_cls(env_cls.config_model.model_validate(config), batch_size)
    rng = np.random.default_rng(0)
    core.reset(rng)
    space = core.action_space
    shape = (batch_size, core.num_agents, *space.shape)
    if isinstance(space, __import__("gymnasium").spaces.Discrete):
        pool = rng.integers(0, space.n, size=(8, batch_size, core.num_agents))
    else:
        pool = rng.uniform(space.low, space.high, size=(8, *shape)).astype(space.dtype)
    count = [0]

    def step() -> None:
        result = core.step(pool[count[0] % len(pool)], rng)
        count[0] += 1
        core.observe()
        done = result.terminated | result.truncated
        if done.any():
            core.reset(rng, done)

    return _median_rate(step, seconds, chunk=5) * batch_size * core.num_agents
