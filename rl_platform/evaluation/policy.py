"""Run a trained policy (from its weights-only export) on an env's batched core.

Envs without a batched core (the PettingZoo adapter) are played on their RLlib view.

The exported module is loaded without Ray or pickles (:func:`checkpoints.load_policy`);
observations are shaped as the module was trained on them (MAPPO/IPPO modules take
``{"obs": local [+ agent one-hot]}``), and actions are greedy: the argmax of the logits,
or the distribution's deterministic action (the Gaussian's mean). On an env with action
masks the masks (B, N, n_actions) go into the modules' observations (``action_mask``):
the argmax is over allowed actions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rl_platform import registry
from rl_platform.checkpoints import (
    PolicyExportError,
    load_policy,
    read_manifest,
    unpack_export,
)
from rl_platform.evaluation.baselines import runs_on_core, view_episode_scores


class TrainedPolicy:
    """Greedy actions of every agent's trained module for batched observations.

    Recurrent (stateful) modules get each agent's state from the previous call (the
    module's initial state on the first call, after :meth:`reset`, or when the batch
    size changes): call :meth:`reset` at the start of every episode. A caller that keeps
    states itself (a server, one per session) passes them to :meth:`actions`.
    """

    def __init__(self, checkpoint: str | Path) -> None:
        manifest = read_manifest(checkpoint)
        modules = {mid: load_policy(checkpoint, mid) for mid in set(manifest["agents"].values())}
        self._setup(manifest, modules)

    @classmethod
    def from_export(cls, files: dict[str, bytes]) -> TrainedPolicy:
        """A policy from an export's files (:func:`~rl_platform.checkpoints.pack_export`).

        For a Ray worker on a node that cannot see the checkpoint: the files are written
        to a private temp dir, loaded as any export (data only) and deleted.
        """
        with tempfile.TemporaryDirectory(prefix="rlp-policy-") as scratch:
            return cls(unpack_export(files, scratch))

    @classmethod
    def from_modules(cls, modules: dict[str, Any], agents: dict[str, str]) -> TrainedPolicy:
        """A policy from live modules (e.g. during training): ``agents`` maps agent -> module."""
        policy = cls.__new__(cls)
        policy._setup({"agents": dict(agents)}, modules)
        return policy

    def _setup(self, manifest: dict[str, Any], modules: dict[str, Any]) -> None:
        self.manifest = manifest
        self.agents = list(manifest["agents"])
        self.modules = modules
        self._states: dict[str, Any] = {}  # agent -> its module's last STATE_OUT

    def reset(self) -> None:
        """Forget recurrent modules' states: the next call starts new episodes."""
        self._states.clear()

    def actions(
        self,
        obs: np.ndarray,
        masks: np.ndarray | None = None,
        states: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """Actions (B, N, *action_shape) for observations (B, N, obs_dim).

        ``masks`` (B, N, n_actions), 0/1: the actions each agent may take (all when None);
        a module trained with masks picks the best allowed one. ``states``: agent -> its
        recurrent module's state for the B rows (as :meth:`initial_state` makes them),
        used instead of the carried ones and replaced by the states after this step.
        """
        import torch
        from ray.rllib.core.columns import Columns

        b, n = obs.shape[:2]
        out = []
        for i, agent in enumerate(self.agents):
            module = self.modules[self.manifest["agents"][agent]]
            local = torch.as_tensor(obs[:, i], dtype=torch.float32)
            space = module.observation_space
            if isinstance(space, gym.spaces.Dict):
                key = "obs" if "obs" in space.spaces else "observations"  # PPO's masked modules
                missing = space[key].shape[0] - local.shape[1]
                if missing == n:  # trained with the agent's one-hot index appended
                    local = torch.cat([local, torch.eye(n)[i].expand(b, n)], dim=1)
                batch = {Columns.OBS: {key: local}}
                if masks is not None and "action_mask" in space.spaces:
                    batch[Columns.OBS]["action_mask"] = torch.as_tensor(
                        masks[:, i], dtype=torch.float32
                    )
            else:
                batch = {Columns.OBS: local}
            stateful = module.is_stateful()
            if stateful:
                batch[Columns.STATE_IN] = (
                    self._state_in(agent, module, b) if states is None else states[agent]
                )
            with torch.no_grad():
                result = module.forward_inference(batch)
            logits = result[Columns.ACTION_DIST_INPUTS]
            if stateful:
                (self._states if states is None else states)[agent] = result[Columns.STATE_OUT]
            if isinstance(module.action_space, gym.spaces.Discrete):
                if masks is not None:  # whatever the module does with masks: none is taken
                    logits = logits.masked_fill(torch.as_tensor(masks[:, i]) == 0, -torch.inf)
                out.append(logits.argmax(-1).numpy())
            else:
                dist_cls = module.get_inference_action_dist_cls()
                space = module.action_space
                if dist_cls.required_input_dim(space) == logits.shape[-1]:
                    # the distribution's deterministic action (a squashed one squashes)
                    greedy = dist_cls.from_logits(logits).to_deterministic().sample()
                    out.append(greedy.numpy())
                else:  # the module outputs the action itself (MADDPG's actors)
                    out.append(logits[:, : space.shape[0]].numpy())
        return np.stack(out, axis=1)

    def _state_in(self, agent: str, module: Any, b: int) -> Any:
        """The agent's carried state (batch b), or its module's initial state tiled to b."""
        import tree

        state = self._states.get(agent)
        if state is not None and all(len(s) == b for s in tree.flatten(state)):
            return state
        return self.initial_state(agent, b)

    def stateful_agents(self) -> list[str]:
        """The agents whose modules are recurrent."""
        return [a for a in self.agents if self.modules[self.manifest["agents"][a]].is_stateful()]

    def initial_state(self, agent: str, b: int = 1) -> Any:
        """The agent's module's initial state for b rows."""
        import torch
        import tree

        module = self.modules[self.manifest["agents"][agent]]
        return tree.map_structure(
            lambda s: torch.as_tensor(s).unsqueeze(0).expand(b, *s.shape).clone(),
            module.get_initial_state(),
        )


def policy_scores(
    checkpoint: str | Path,
    config: dict[str, Any] | None = None,
    episodes: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """Mean per-agent episode return of a trained policy, per episode (one copy each).

    Raises:
        PolicyExportError: the export is missing, corrupt or trained on an unknown env.
    """
    policy = TrainedPolicy(checkpoint)
    env_id = policy.manifest["env"]["id"]
    entry = registry.get_env(env_id)
    if entry is None:
        raise PolicyExportError(f"{checkpoint}: env {env_id!r} is not registered here")
    env_cls = entry.load()
    merged = {**policy.manifest["env"]["config"], **(config or {})}
    merged = {**merged, **entry.bound_config}
    if not runs_on_core(env_cls, merged):
        env = env_cls(merged)
        return view_episode_scores(env, policy.actions, episodes, seed, reset=policy.reset)
    core = env_cls.core_cls(env_cls.config_model.model_validate(merged), episodes)
    policy.reset()  # play_episodes plays one episode per copy, all starting now
    masks = getattr(core, "action_masks", None)
    act = (lambda obs: policy.actions(obs, masks())) if callable(masks) else policy.actions
    return core.play_episodes(act, np.random.default_rng(seed))
