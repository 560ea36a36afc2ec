"""A turn-based PettingZoo AEC env as an RLlib ``MultiAgentEnv``: only the agent to act observes.

RLlib's turn-based convention (``rllib/examples/envs/classes/multi_agent/tic_tac_toe.py``):
each step's observation dict holds only the agent that acts next, and ``step`` takes its
action. What every agent earns in the meantime (the opponent's winning move included) is
added up and delivered with that agent's next observation, or at the episode's end, when
every agent gets its last observation, its reward and its done flag. The env's action
masks are passed on as ``{"observations", "action_mask"}``; observations are flattened to
float32 vectors. The global state is the env's ``state()`` where it has one, else every
agent's latest observation joined. ``infos[agent]["illegal"]`` is 1 when the agent's last
action was masked. How it is reached and trained: docs/custom-envs.md ("Turn-based envs").
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rl_platform.envs.common import checked_action, share_team_reward


def is_turn_based(env: Any) -> bool:
    """Whether `env` is an AEC env PettingZoo cannot make parallel (its agents act in turn)."""
    from pettingzoo import AECEnv

    return isinstance(env, AECEnv) and not env.metadata.get("is_parallelizable", False)


def flat_box(space: gym.Space) -> gym.spaces.Box:
    """`space` flattened to a float32 vector Box."""
    flat = gym.spaces.flatten_space(space)
    return gym.spaces.Box(
        flat.low.astype(np.float32), flat.high.astype(np.float32), dtype=np.float32
    )


class TurnBasedEnv(MultiAgentEnv):
    """RLlib view of a turn-based PettingZoo ``AECEnv`` (see the module docstring).

    Args:
        aec_env: the AEC env, as its factory built it.
        team_reward: share of each reward replaced by the mean over the agents.
    """

    def __init__(self, aec_env: Any, team_reward: float = 0.0) -> None:
        super().__init__()
        self.aec = aec_env
        self.team_reward = float(team_reward)
        self.possible_agents = list(aec_env.possible_agents)
        self.agents = list(self.possible_agents)
        raw = {a: aec_env.observation_space(a) for a in self.possible_agents}
        self._masked = {
            a: isinstance(s, gym.spaces.Dict) and "action_mask" in s.spaces for a, s in raw.items()
        }
        self._raw_obs = {a: s["observation"] if self._masked[a] else s for a, s in raw.items()}
        self._flat = {a: flat_box(s) for a, s in self._raw_obs.items()}
        self.observation_spaces = {
            a: gym.spaces.Dict({"observations": self._flat[a], "action_mask": s["action_mask"]})
            if self._masked[a]
            else self._flat[a]
            for a, s in raw.items()
        }
        self.action_spaces = {a: aec_env.action_space(a) for a in self.possible_agents}
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        own_state = getattr(aec_env, "state_space", None)
        self._own_state = isinstance(own_state, gym.Space) and callable(
            getattr(aec_env, "state", None)
        )
        if self._own_state:
            self.state_space = own_state
        else:
            size = sum(s.shape[0] for s in self._flat.values())
            self.state_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self._pending = dict.fromkeys(self.possible_agents, 0.0)  # earned, not yet delivered
        self._illegal = dict.fromkeys(self.possible_agents, 0)  # masked actions, not reported
        self._mask: np.ndarray | None = None  # the acting agent's mask
        self._latest: dict[str, np.ndarray] = {}
        self._episode_over = True

    @property
    def acting_agent(self) -> str | None:
        """The agent whose action the next ``step`` takes (None once the episode is over)."""
        return None if self._episode_over else self.aec.agent_selection

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: D102
        self.aec.reset(seed=seed, options=options)
        self._pending = dict.fromkeys(self.possible_agents, 0.0)
        self._illegal = dict.fromkeys(self.possible_agents, 0)
        self._latest = {}
        self._episode_over = False
        obs, rewards, terms, truncs, infos = self._advance()
        return obs, infos

    def step(self, action_dict: dict[str, Any]):  # noqa: D102
        if self._episode_over:
            raise RuntimeError("step() after the episode ended; call reset() first")
        live = set(self.aec.agents)
        unknown = [str(a) for a in action_dict if a not in live]
        if unknown:
            raise ValueError(f"unknown or departed agent id(s) {', '.join(unknown)}")
        checked = {a: checked_action(a, self.action_spaces[a], v) for a, v in action_dict.items()}
        acting = self.aec.agent_selection
        if acting not in checked:
            raise ValueError(f"it is agent {acting}'s turn; got actions for {sorted(checked)}")
        action = checked[acting]  # the others' actions (not their turn) are ignored
        if self._mask is not None and not self._mask[action]:
            self._illegal[acting] += 1
            self._step_quietly(action)
        else:
            self.aec.step(action)
        self._collect()
        return self._advance()

    def _step_quietly(self, action: Any) -> None:
        """Step a masked action without PettingZoo's warning (``illegal`` reports it)."""
        from pettingzoo.utils.env_logger import EnvLogger

        logger, queued = EnvLogger.get_logger(), len(EnvLogger.mqueue)
        disabled, logger.disabled = logger.disabled, True
        try:
            self.aec.step(action)
        finally:
            logger.disabled = disabled
            del EnvLogger.mqueue[queued:]  # PettingZoo keeps every warning otherwise

    def _collect(self) -> None:
        """Add the last AEC step's rewards to every agent's pending reward."""
        rewards = share_team_reward(self.aec.rewards, self.team_reward)
        for agent, reward in rewards.items():
            self._pending[agent] += reward

    def _observe(self, agent: str) -> Any:
        value = self.aec.observe(agent)
        raw = value["observation"] if self._masked[agent] else value
        flat = gym.spaces.flatten(self._raw_obs[agent], raw).astype(np.float32)
        self._latest[agent] = flat
        if not self._masked[agent]:
            return flat
        return {"observations": flat, "action_mask": np.asarray(value["action_mask"])}

    def _advance(self) -> tuple[dict, dict, dict, dict, dict]:
        """Retire agents whose episode ended, then show the next agent to act (if any).

        Returns the step's five dicts: observations, rewards, infos for the agents shown
        (the one to act, those that just finished), terminated/truncated flags.
        """
        aec = self.aec
        obs: dict[str, Any] = {}
        terms: dict[str, bool] = {}
        truncs: dict[str, bool] = {}
        last_infos: dict[str, dict] = {}  # a finished agent's infos leave with it
        while aec.agents and (
            aec.terminations[aec.agent_selection] or aec.truncations[aec.agent_selection]
        ):
            agent = aec.agent_selection
            obs[agent] = self._observe(agent)
            terms[agent] = bool(aec.terminations[agent])
            truncs[agent] = bool(aec.truncations[agent]) and not terms[agent]
            last_infos[agent] = dict(aec.infos.get(agent, {}))
            aec.step(None)  # PettingZoo's way out for a finished agent
            self._collect()
        self.agents = list(aec.agents)
        self._mask = None
        if aec.agents:
            acting = aec.agent_selection
            obs[acting] = self._observe(acting)
            if self._masked[acting]:
                self._mask = np.asarray(obs[acting]["action_mask"]).astype(bool)
        else:
            self._episode_over = True
        # Everything earned since an agent last observed comes with this observation.
        rewards = {a: self._pending[a] for a in obs}
        for agent in obs:
            self._pending[agent] = 0.0
        infos = {}
        for agent in obs:
            info = last_infos.get(agent) or dict(aec.infos.get(agent, {}))
            info["illegal"] = self._illegal[agent]
            self._illegal[agent] = 0
            infos[agent] = info
        done = self._episode_over
        terms["__all__"] = done and all(terms.values())
        truncs["__all__"] = done and not terms["__all__"]
        return obs, rewards, terms, truncs, infos

    def state(self) -> np.ndarray:
        """The env's global state, or every agent's latest observation joined."""
        if self._own_state:
            return self.aec.state()
        parts = [self._latest.get(a, np.zeros(s.shape, np.float32)) for a, s in self._flat.items()]
        return np.concatenate(parts).astype(np.float32)

    def close(self) -> None:  # noqa: D102
        self.aec.close()


def illegal_moves_of_step(episode: Any) -> int:
    """Masked moves reported in an RLlib ``MultiAgentEpisode``'s last step (its ``illegal`` infos).

    Called from an ``on_episode_step`` callback, the sum over an episode counts each
    masked move once: only the agents that observed this step report.
    """
    return sum(
        int(episode.agent_episodes[agent].get_infos(-1).get("illegal", 0))
        for agent in episode.get_agents_that_stepped()
    )
