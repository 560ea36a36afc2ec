"""Continuous learning from served decisions: advantage-weighted regression, offline.

:func:`finetune_from_store` fits each exported module's action distribution to the
actions in the feedback store, weighted by the exponentiated standardized reward (AWR,
Peng et al. 2019), and writes a new weights-only export (``out/policies/``). It runs
offline (``rlp finetune``); the weighting and loss: docs/serving.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rl_platform.checkpoints import (
    EXPORT_DIR,
    MANIFEST,
    load_policy,
    read_manifest,
    runtime_versions,
    write_manifest,
)
from rl_platform.serving.ab_test import ARMS, FeedbackStore, Transition

MAX_WEIGHT = 20.0  # AWR's weight clip: one lucky reward cannot dominate the fit.
BATCH_SIZE = 256


@dataclass(frozen=True)
class ModuleFinetune:
    """One module's fit: its (agent, decision) samples and weighted NLL before/after."""

    samples: int
    loss_before: float
    loss_after: float


@dataclass(frozen=True)
class FinetuneResult:
    """Where the fine-tuned export went, what it learned from, and how the loss moved.

    ``loss_before`` / ``loss_after`` are the modules' losses averaged over samples.
    """

    out: Path
    transitions: int
    loss_before: float
    loss_after: float
    modules: dict[str, ModuleFinetune] = field(default_factory=dict)


def awr_weights(rewards: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """AWR weights of rewards (T,): ``exp`` of the standardized reward over ``temperature``.

    Clipped at :data:`MAX_WEIGHT`; all ones when the rewards do not vary.
    """
    std = float(rewards.std())
    if std < 1e-8:
        return np.ones_like(rewards, dtype=np.float64)
    z = (rewards - rewards.mean()) / (temperature * std)
    return np.minimum(np.exp(z), MAX_WEIGHT)


def finetune_from_store(
    export: str | Path,
    store: str | Path,
    out: str | Path,
    *,
    arm: str | None = None,
    epochs: int = 20,
    lr: float = 1e-3,
    temperature: float = 1.0,
    min_transitions: int = 50,
    seed: int = 0,
) -> FinetuneResult:
    """Fine-tune an export's modules on a feedback store's rewarded decisions.

    Args:
        export: a checkpoint holding ``policies/``, or the ``policies/`` dir itself.
        store: the serving feedback store (SQLite file); it is only read.
        out: directory for the new export (``out/policies/``); must not hold one yet.
        arm: learn only from the decisions of this arm (default: both arms).
        epochs: passes over the transitions (minibatches of :data:`BATCH_SIZE`).
        lr: Adam learning rate.
        temperature: AWR temperature in units of the reward's std; lower follows the
            best-rewarded actions more greedily.
        min_transitions: refuse to fit fewer rewarded decisions than this.
        seed: seeds the minibatch order.

    Raises:
        ValueError: too few transitions; transitions whose agents, observation sizes or
            actions do not match the export; a recurrent or value-based module.
        FileNotFoundError: no store at ``store``.
        FileExistsError: ``out`` already holds an export.
        PolicyExportError: the export is missing, corrupt or cannot be loaded.
    """
    import torch

    if arm is not None and arm not in ARMS:
        raise ValueError(f"arm must be one of {', '.join(ARMS)} or None, got {arm!r}")
    if temperature <= 0 or epochs < 1 or lr <= 0:
        raise ValueError(
            f"need temperature > 0, epochs >= 1, lr > 0; got {temperature}, {epochs}, {lr}"
        )
    store = Path(store)
    if not store.is_file():
        raise FileNotFoundError(f"{store}: no feedback store")
    target = Path(out) / EXPORT_DIR
    if (target / MANIFEST).exists():
        raise FileExistsError(f"{target}: already holds a policy export; choose a new --out")

    manifest = read_manifest(export)
    with FeedbackStore(store) as feedback:
        transitions = list(feedback.transitions(arm))
    which = f"arm {arm!r}" if arm else "both arms"
    if len(transitions) < min_transitions:
        raise ValueError(
            f"{store}: {len(transitions)} rewarded decisions of {which}, fine-tuning needs "
            f"at least {min_transitions} (min_transitions)"
        )
    _check_agents(manifest, transitions, store)

    rewards = np.array([t.reward for t in transitions], dtype=np.float64)
    weights = torch.as_tensor(awr_weights(rewards, temperature), dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    fits: dict[str, ModuleFinetune] = {}
    states: dict[str, dict[str, Any]] = {}
    for module_id in manifest["modules"]:
        module = load_policy(export, module_id)
        agents = [a for a, m in manifest["agents"].items() if m == module_id]
        if agents:
            obs, actions = _module_batch(module, module_id, manifest, agents, transitions)
            w = weights.repeat(len(agents))  # samples are agent-major: agent 0's T first
            fits[module_id] = _fit(module, obs, actions, w, epochs, lr, generator)
        states[module_id] = module.state_dict()

    target.mkdir(parents=True, exist_ok=True)
    for module_id, state in states.items():
        torch.save(state, target / f"{module_id}.pt")
    new_manifest = {
        **manifest,
        "versions": runtime_versions(),  # the versions that wrote these weights
        "finetuned_from": {
            "checkpoint": str(Path(export).resolve()),
            "store": str(store.resolve()),
            "transitions": len(transitions),
            "arm": arm,
            "epochs": epochs,
            "lr": lr,
            "temperature": temperature,
            "seed": seed,
        },
    }
    write_manifest(target, new_manifest)

    total = sum(f.samples for f in fits.values())
    return FinetuneResult(
        out=target,
        transitions=len(transitions),
        loss_before=sum(f.loss_before * f.samples for f in fits.values()) / total,
        loss_after=sum(f.loss_after * f.samples for f in fits.values()) / total,
        modules=fits,
    )


def _check_agents(manifest: dict[str, Any], transitions: list[Transition], store: Path) -> None:
    """Every transition carries exactly the export's agents, observations and actions."""
    agents = set(manifest["agents"])
    for t in transitions:
        for what, carried in (("observations", t.observations), ("actions", t.actions)):
            if set(carried) != agents:
                raise ValueError(
                    f"{store}: request {t.request_id!r} carries {what} of agents "
                    f"{sorted(carried)}, but the export ({manifest['env']['id']}) has agents "
                    f"{sorted(agents)}: were these decisions served by another env's policy?"
                )


def _module_batch(
    module: Any,
    module_id: str,
    manifest: dict[str, Any],
    agents: list[str],
    transitions: list[Transition],
) -> tuple[Any, Any]:
    """The module's input batch and actions, (len(agents) * T, ...), agent-major.

    Observations are shaped as :class:`TrainedPolicy` shapes them: ``{"obs": local}``
    for Dict-space (MAPPO) modules, with the agent's one-hot index appended when the
    module's observation is one entry per agent wider than the local one.
    """
    import torch
    from ray.rllib.core.columns import Columns

    if module.is_stateful():
        raise ValueError(
            f"module {module_id!r} is recurrent: single served decisions carry no history "
            f"to fine-tune it on"
        )
    order = list(manifest["agents"])
    n = len(order)
    space = module.observation_space
    is_dict = isinstance(space, gym.spaces.Dict)
    width = (space["obs"] if is_dict else space).shape[0]
    one_hot = False
    first = transitions[0].observations[agents[0]]
    local_dim = len(first) if isinstance(first, list) else -1
    if is_dict and width - local_dim == n:
        one_hot, width = True, width - n
    obs_rows, act_rows = [], []
    for agent in agents:
        obs = _observations(transitions, agent, width, module_id)
        if one_hot:
            index = np.zeros((len(obs), n), dtype=np.float32)
            index[:, order.index(agent)] = 1.0
            obs = np.concatenate([obs, index], axis=1)
        obs_rows.append(obs)
        act_rows.append(_actions(transitions, agent, module.action_space, module_id))
    local_obs = torch.as_tensor(np.concatenate(obs_rows))
    batch = {Columns.OBS: {"obs": local_obs} if is_dict else local_obs}
    return batch, torch.as_tensor(np.concatenate(act_rows))


def _observations(
    transitions: list[Transition], agent: str, width: int, module_id: str
) -> np.ndarray:
    """One agent's observations (T, width), float32; ValueError naming a wrong-sized one."""
    for t in transitions:
        values = t.observations[agent]
        if not isinstance(values, list) or len(values) != width:
            size = len(values) if isinstance(values, list) else type(values).__name__
            raise ValueError(
                f"request {t.request_id!r}: {agent}'s observation has size {size}, module "
                f"{module_id!r} takes {width}: were these decisions served by another env?"
            )
    try:
        return np.array([t.observations[agent] for t in transitions], dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{agent}'s observations are not numbers: {err}") from None


def _actions(
    transitions: list[Transition], agent: str, space: gym.Space, module_id: str
) -> np.ndarray:
    """One agent's actions as the module's distribution takes them: (T,) int or (T, dim)."""
    raw = [t.actions[agent] for t in transitions]
    if isinstance(space, gym.spaces.Discrete):
        acts = np.array(raw)
        if acts.ndim != 1 or not np.issubdtype(acts.dtype, np.integer):
            raise ValueError(f"{agent}'s actions must be integers for module {module_id!r}")
        if acts.min() < space.start or acts.max() >= space.start + space.n:
            raise ValueError(f"{agent}'s actions are outside module {module_id!r}'s {space}")
        return (acts - space.start).astype(np.int64)
    if isinstance(space, gym.spaces.Box):
        try:
            acts = np.array(raw, dtype=np.float32)
        except (TypeError, ValueError):
            acts = np.zeros(0)
        if acts.shape != (len(raw), *space.shape):
            raise ValueError(
                f"{agent}'s actions must be {space.shape} number lists for module {module_id!r}"
            )
        return acts.reshape(len(raw), -1)
    raise ValueError(f"module {module_id!r}: cannot fine-tune a {type(space).__name__} action")


def _fit(
    module: Any, batch: dict[str, Any], actions: Any, weights: Any, epochs: int, lr: float, gen: Any
) -> ModuleFinetune:
    """Minimize the weighted NLL of ``actions`` under the module's train distribution."""
    import torch
    from ray.rllib.core.columns import Columns

    dist_cls = module.get_train_action_dist_cls()

    def loss_of(rows: Any) -> Any:
        obs = batch[Columns.OBS]
        sub = {k: v[rows] for k, v in obs.items()} if isinstance(obs, dict) else obs[rows]
        out = module.forward_train({Columns.OBS: sub})
        if Columns.ACTION_DIST_INPUTS not in out:
            raise ValueError(
                f"{type(module).__name__} has no action distribution (value-based?): "
                f"advantage-weighted fine-tuning needs a stochastic policy"
            )
        logp = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS]).logp(actions[rows])
        return -(weights[rows] * logp).mean()

    size = len(actions)
    everything = torch.arange(size)
    with torch.no_grad():
        before = float(loss_of(everything))
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    for _ in range(epochs):
        for rows in torch.randperm(size, generator=gen).split(BATCH_SIZE):
            optimizer.zero_grad()
            loss_of(rows).backward()
            optimizer.step()
    module.eval()
    with torch.no_grad():
        after = float(loss_of(everything))
    if not math.isfinite(after):
        raise ValueError(f"fine-tuning diverged (loss {after}); lower lr or raise temperature")
    return ModuleFinetune(samples=size, loss_before=before, loss_after=after)
