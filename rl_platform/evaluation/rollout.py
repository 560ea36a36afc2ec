"""Play one episode in each of B env copies, under a perturbation, and summarize it.

The evaluation suite is built from :func:`play` jobs: a policy (trained, a baseline or
random), a task level, a perturbation and seeds go in; a :class:`PlayedEpisodes`
summary small enough to ship between Ray workers comes out. Every random draw comes
from the two generators a job is given, so a job's result depends only on its inputs.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from rl_platform import registry
from rl_platform.envs.base import BatchedCore
from rl_platform.envs.metrics import action_correlation
from rl_platform.evaluation.baselines import RANDOM, random_actions

POLICY = "policy"  # the trained policy's name in jobs and results
FAULTY = "faulty"  # a replaced agent stuck at the env's "do nothing" action
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class Perturbation:
    """What goes wrong during an episode.

    Attributes:
        obs_noise: std of Gaussian noise added to every observation feature, in units of
            that feature's std (``obs_scale`` of :func:`play`).
        action_noise: probability that an agent's action at a step is replaced by a
            uniformly random one.
        replaced: ``"random"`` or ``"faulty"``: in copy b, agent ``b % N`` acts
            randomly or is stuck at the env's default ("do nothing") action.
        switch: ``(step, level)``: the task level switches to ``level`` before that step.
    """

    obs_noise: float = 0.0
    action_noise: float = 0.0
    replaced: str | None = None
    switch: tuple[int, str] | None = None


@dataclass(frozen=True)
class Job:
    """One batch of episodes to play: who, where, under what, with which seeds."""

    policy: str  # POLICY, a baseline name or RANDOM
    test: str  # "clean", "obs_noise", ..., "switch:<level>"
    level: str
    episodes: int
    env_seed: int  # seeds the env's generator (same for every policy: paired episodes)
    noise_seed: int  # seeds noise, perturbations and the random policy
    perturbation: Perturbation = Perturbation()
    record: bool = False  # keep one episode's trace and the action histograms
    shielded: bool = False  # actions pass the constraint shield before the env


@dataclass
class PlayedEpisodes:
    """A job's result; per-episode figures are means over agents of per-agent sums.

    Attributes:
        returns: (B,) each copy's mean per-agent return over its episode.
        components: unweighted reward component -> mean over copies of the per-agent sum.
        step_rewards: (T,) mean per-agent reward at each step over the copies still
            running (NaN once none is).
        coordination: the env's coordination figures (``BatchedCore.coordination``) plus
            ``action_correlation``.
        obs_std: (obs_dim,) std of each observation feature over the episodes.
        actions: histogram of the actions taken (see :func:`action_histogram`).
        trace: copy 0's traced quantities, per step (recorded jobs only).
        safety: with a safety spec: ``violation_rate`` (constraint -> share of agent-steps
            whose action, before any shield, broke it; ``any``), and for shielded jobs
            ``intervention_rate`` (share of agent-steps replaced) and ``unresolved``.
    """

    job: Job
    returns: np.ndarray
    components: dict[str, float]
    step_rewards: np.ndarray
    coordination: dict[str, float]
    obs_std: np.ndarray
    actions: dict[str, Any] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)
    safety: dict[str, Any] = field(default_factory=dict)


def stable_seed(*parts: object) -> int:
    """A seed from names and numbers, the same in every process (unlike ``hash``)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def seeded_job(
    policy: str,
    test: str,
    level: str,
    episodes: int,
    seed: int,
    perturbation: Perturbation = Perturbation(),
    record: bool = False,
) -> Job:
    """A job whose seeds derive from the evaluation seed and its names.

    The env seed depends on the level only, so every policy and test at a level plays
    the same env draws (paired comparisons); the noise seed on all of its names.
    """
    return Job(
        policy=policy,
        test=test,
        level=level,
        episodes=episodes,
        env_seed=stable_seed("env", seed, level),
        noise_seed=stable_seed("noise", seed, policy, test, level),
        perturbation=perturbation,
        record=record,
    )


def make_core(env_id: str, env_config: dict[str, Any], level: str, batch: int) -> BatchedCore:
    """The env's batched core with ``batch`` copies at ``level``."""
    env_cls = registry.get_env(env_id).load()
    if not hasattr(env_cls, "core_cls"):
        raise ValueError(f"env {env_id!r} has no batched core; the evaluation suite needs one")
    merged = {**env_config, **registry.get_env(env_id).bound_config}
    if "task" in env_cls.config_model.model_fields:
        merged["task"] = level
    core = env_cls.core_cls(env_cls.config_model.model_validate(merged), batch)
    core.set_task(level)
    return core


def play(
    core: BatchedCore,
    act: Callable[[np.ndarray], np.ndarray],
    job: Job,
    obs_scale: np.ndarray | None = None,
    reset_policy: Callable[[], None] | None = None,
    shield: Any = None,
) -> PlayedEpisodes:
    """Play one episode in every copy of ``core`` with ``act(obs) -> actions``.

    ``act`` sees the (possibly noisy) observations (B, N, obs_dim) and returns actions
    (B, N, *action_shape); the job's perturbation is applied to what it returns. On a
    core with action masks (``action_masks()``), an ``act`` with a ``masks`` parameter
    gets them (B, N, n_actions); any masked action left after the perturbation (a
    random or mask-unaware policy's) is replaced by one drawn uniformly among the
    allowed ones, so random play stays uniform over what the env allows. With a
    ``shield`` (:class:`~rl_platform.safety.Shield` on ``core``) every action is checked
    against its constraints, and in a shielded job replaced by the fallback's when it
    breaks one: the shield is the last layer before the env.
    """
    rng = np.random.default_rng(job.env_seed)
    noise = np.random.default_rng(job.noise_seed)
    pert = job.perturbation
    b, n = core.batch_size, core.num_agents
    space = core.action_space
    core.set_task(job.level)
    core.reset(rng)
    if reset_policy is not None:
        reset_policy()
    returns = np.zeros((b, n))
    components = {name: np.zeros((b, n)) for name in core.reward_components}
    step_rewards, copy0_rewards, alive_steps, actions_taken, obs_seen = [], [], [], [], []
    traces: list[dict[str, np.ndarray]] = []
    running = np.ones(b, dtype=bool)
    replaced = np.arange(b) % n
    violations, violations_any, intervened, unresolved, agent_steps = 0.0, 0, 0, 0, 0
    t = 0
    action_masks = getattr(core, "action_masks", None)
    takes_masks = accepts_masks(act)
    while running.any():
        if pert.switch is not None and t == pert.switch[0]:
            core.switch_task(pert.switch[1])
        obs = core.observe()
        masks = action_masks() if action_masks is not None else None
        obs_seen.append(obs[running])
        if pert.obs_noise and obs_scale is not None:
            obs = obs + noise.normal(size=obs.shape).astype(np.float32) * (
                pert.obs_noise * obs_scale
            )
        given = act(obs, masks=masks) if masks is not None and takes_masks else act(obs)
        actions = np.array(given, copy=True)
        if pert.action_noise:
            flip = noise.random((b, n)) < pert.action_noise
            actions[flip] = random_actions(space, (b, n), noise)[flip]
        if pert.replaced == RANDOM:
            actions[np.arange(b), replaced] = random_actions(space, (b,), noise)
        elif pert.replaced == FAULTY:
            actions[np.arange(b), replaced] = core.default_action()
        if masks is not None:
            actions = allowed_actions(actions, masks, noise)
        if shield is not None:
            broken = shield.violations(actions)[running]  # (live copies, N, C)
            violations = violations + broken.sum(axis=(0, 1))
            agent_steps += broken.shape[0] * n
            if job.shielded:
                actions, record = shield.filter(obs, actions)
                intervened += int(record.mask[running].sum())
                unresolved += int(record.unresolved[running].sum())
            violations_any += int(broken.any(axis=-1).sum())
        result = core.step(actions, rng)
        live = running[:, None]
        returns += np.where(live, result.rewards, 0.0)
        for name, value in result.components.items():
            components[name] += np.where(live, value, 0.0)
        step_rewards.append(result.rewards[running].mean())
        copy0_rewards.append(result.rewards[0].mean())
        alive_steps.append(running.copy())
        actions_taken.append(actions)
        if core.trace_fields:
            traces.append({k: np.array(v, copy=True) for k, v in core.trace().items()})
        running &= ~(result.terminated | result.truncated)
        t += 1
    alive = np.stack(alive_steps)
    taken = np.stack(actions_taken)
    trace = {k: np.stack([step[k] for step in traces]) for k in core.trace_fields} if traces else {}
    # a core without trace fields still gets its coordination (the default: how alike
    # the agents act)
    coordination = dict(type(core).coordination(trace, taken, alive))
    discrete = isinstance(space, gym.spaces.Discrete)
    coordination["action_correlation"] = float(action_correlation(taken, alive, discrete))
    played = PlayedEpisodes(
        job=job,
        returns=returns.mean(axis=1),
        components={k: float(v.mean()) for k, v in components.items()},
        step_rewards=np.asarray(step_rewards, dtype=np.float64),
        coordination={k: float(v) for k, v in coordination.items()},
        obs_std=np.concatenate(obs_seen).reshape(-1, obs.shape[-1]).std(axis=0),
    )
    if shield is not None:
        steps = max(agent_steps, 1)
        rates = {c.name: float(v / steps) for c, v in zip(shield.spec.constraints, violations)}
        rates["any"] = violations_any / steps if agent_steps else 0.0
        played.safety = {"violation_rate": rates}
        if job.shielded:
            played.safety["intervention_rate"] = intervened / steps
            played.safety["unresolved"] = unresolved
    if job.record:
        played.actions = action_histogram(taken, alive, space)
        played.trace = {
            "steps": int(alive[:, 0].sum()),
            "fields": {k: v[alive[:, 0], 0].tolist() for k, v in trace.items()},
            "rewards": [float(r) for r, live in zip(copy0_rewards, alive[:, 0]) if live],
        }
    return played


def accepts_masks(act: Callable[..., Any]) -> bool:
    """Whether a policy callable takes action masks (a ``masks`` parameter)."""
    try:
        return "masks" in inspect.signature(act).parameters
    except (TypeError, ValueError):
        return False


def allowed_actions(actions: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`actions` (B, N) with every masked one replaced by a uniform draw among the allowed.

    A uniform random action so corrected is uniform over the allowed actions.
    """
    b, n = masks.shape[:2]
    rows, cols = np.indices((b, n))
    taken = masks[rows, cols, actions.astype(int)] > 0
    if taken.all():
        return actions
    bad = ~taken
    scores = rng.random(masks[bad].shape) + (masks[bad] > 0)  # allowed ones score above 1
    actions = actions.copy()
    actions[bad] = scores.argmax(-1)
    return actions


def action_histogram(actions: np.ndarray, alive: np.ndarray, space: gym.Space) -> dict[str, Any]:
    """Per agent, how often each action (discrete) or each value bin (continuous) was taken.

    Returns:
        ``{"kind": "discrete", "labels": [...], "counts": [[count per action] per agent]}``
        or ``{"kind": "continuous", "dims": [...], "bins": edges,
        "counts": [[[count per bin] per dim] per agent]}``; values outside the Box are
        counted in its edge bins (the env clips them).
    """
    taken = actions[alive]  # (steps over copies, N, *shape)
    n = taken.shape[1]
    if isinstance(space, gym.spaces.Discrete):
        counts = [
            np.bincount(taken[:, i].astype(int), minlength=space.n).tolist() for i in range(n)
        ]
        return {"kind": "discrete", "labels": [str(a) for a in range(space.n)], "counts": counts}
    flat = taken.reshape(taken.shape[0], n, -1)
    low, high = float(np.min(space.low)), float(np.max(space.high))
    if not (np.isfinite(low) and np.isfinite(high)):
        low, high = float(flat.min()), float(flat.max()) + 1e-9
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    clipped = np.clip(flat, low, high)
    counts = [
        [np.histogram(clipped[:, i, d], bins=edges)[0].tolist() for d in range(flat.shape[2])]
        for i in range(n)
    ]
    dims = [f"a{d}" for d in range(flat.shape[2])]
    return {"kind": "continuous", "dims": dims, "bins": edges.tolist(), "counts": counts}
