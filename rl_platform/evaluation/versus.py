"""Turn-based games against a uniformly random legal player: win, draw and loss rates.

A policy trained on a turn-based env (:class:`~rl_platform.envs.turn_based.TurnBasedEnv`:
tictactoe, connect four) is scored by games, not by the evaluation suite: it plays
one seat, a player drawing uniformly among the legal moves plays the others, and the
seats take turns. ``rlp evaluate`` on such a run gives these figures
(docs/custom-envs.md, "Turn-based envs").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rl_platform import registry
from rl_platform.checkpoints import load_policy, read_manifest
from rl_platform.envs.pettingzoo import PettingZooEnv
from rl_platform.envs.turn_based import TurnBasedEnv

OUTCOMES = ("win", "draw", "loss")
RANDOM_PLAYER = "random"  # the row of a random player against random players


def random_move(obs: Any, space: gym.Space, rng: np.random.Generator) -> Any:
    """A uniformly random legal move (among the mask's when the observation has one)."""
    if isinstance(obs, dict) and "action_mask" in obs:
        return int(rng.choice(np.flatnonzero(obs["action_mask"])))
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    return rng.uniform(space.low, space.high).astype(space.dtype)


def play_versus_random(
    env: TurnBasedEnv,
    act: Callable[[str, Any], Any] | None,
    games: int,
    seed: int = 0,
) -> dict[str, Any]:
    """`act(agent, obs)` in one seat against random legal play; game k: seat k mod N.

    ``act`` None plays random against random (the reference row). A game is a win when
    the player's return beats every other seat's, a draw when it ties the best of them.
    Game k is reset with seed ``seed + k``; the random players draw from one generator
    seeded with `seed`.

    Returns:
        ``games``, the ``win``/``draw``/``loss`` rates, ``mean_return`` (the player's),
        ``illegal_moves`` (masked moves the player made: the env ends the game on one),
        ``by_seat`` (the same per seat) and ``returns`` (one per game).
    """
    rng = np.random.default_rng(seed)
    agents = list(env.possible_agents)
    returns = np.zeros(games)
    outcomes: list[str] = []
    seats: list[str] = []
    illegal = 0
    for k in range(games):
        seat = agents[k % len(agents)]
        obs, _ = env.reset(seed=seed + k)
        totals = dict.fromkeys(agents, 0.0)
        done = False
        while not done:
            ((agent, seen),) = obs.items()
            if agent == seat and act is not None:
                action = act(agent, seen)
                mask = seen.get("action_mask") if isinstance(seen, dict) else None
                illegal += int(mask is not None and not mask[action])
            else:
                action = random_move(seen, env.action_spaces[agent], rng)
            obs, rewards, terms, truncs, _ = env.step({agent: action})
            for who, reward in rewards.items():
                totals[who] += reward
            done = terms["__all__"] or truncs["__all__"]
        best_other = max(v for a, v in totals.items() if a != seat)
        own = totals[seat]
        outcomes.append("win" if own > best_other else "draw" if own == best_other else "loss")
        returns[k] = own
        seats.append(seat)

    def rates(picked: list[int]) -> dict[str, Any]:
        count = max(1, len(picked))
        out: dict[str, Any] = {"games": len(picked)}
        for outcome in OUTCOMES:
            out[outcome] = sum(outcomes[i] == outcome for i in picked) / count
        out["mean_return"] = float(returns[picked].mean()) if picked else 0.0
        return out

    summary = rates(list(range(games)))
    summary["illegal_moves"] = illegal
    summary["by_seat"] = {a: rates([i for i in range(games) if seats[i] == a]) for a in agents}
    summary["returns"] = returns.tolist()
    return summary


class TurnPlayer:
    """Greedy moves of a trained policy export, for the agent to act (``act(agent, obs)``).

    The module gets the observation as it was trained on it: the flat vector, with the
    agent's one-hot when one was appended, and the ``action_mask`` where its observation
    space has one (so its own masking applies). Moves are the argmax of its logits.
    """

    def __init__(self, checkpoint: str | Path) -> None:
        manifest = read_manifest(checkpoint)
        self._setup(
            {mid: load_policy(checkpoint, mid) for mid in set(manifest["agents"].values())},
            manifest["agents"],
        )

    @classmethod
    def from_modules(cls, modules: dict[str, Any], agents: dict[str, str]) -> TurnPlayer:
        """A player from live modules (e.g. during training): ``agents`` maps agent -> module."""
        player = cls.__new__(cls)
        player._setup(modules, agents)
        return player

    def _setup(self, modules: dict[str, Any], agents: dict[str, str]) -> None:
        self.mapping = dict(agents)
        self.agents = list(agents)
        self.modules = modules

    def __call__(self, agent: str, obs: Any) -> int:
        """The module's greedy move for `agent` on its observation (a dict with a mask or not)."""
        import torch
        from ray.rllib.core.columns import Columns

        module = self.modules[self.mapping[agent]]
        flat = obs["observations"] if isinstance(obs, dict) else obs
        mask = obs.get("action_mask") if isinstance(obs, dict) else None
        local = torch.as_tensor(np.asarray(flat, np.float32))[None]
        space = module.observation_space
        batch: Any = local
        if isinstance(space, gym.spaces.Dict) and "obs" in space.spaces:  # MAPPO / IPPO
            n = len(self.agents)
            if space["obs"].shape[0] - local.shape[1] == n:  # its one-hot index appended
                local = torch.cat([local, torch.eye(n)[self.agents.index(agent)][None]], dim=1)
            batch = {"obs": local}
            if "action_mask" in space.spaces and mask is not None:
                batch["action_mask"] = torch.as_tensor(np.asarray(mask, np.float32))[None]
        elif isinstance(space, gym.spaces.Dict) and "observations" in space.spaces:
            batch = {"observations": local}
            if mask is not None:
                batch["action_mask"] = torch.as_tensor(np.asarray(mask, np.float32))[None]
        with torch.no_grad():
            logits = module.forward_inference({Columns.OBS: batch})[Columns.ACTION_DIST_INPUTS]
        return int(logits.argmax(-1)[0])


def turn_based_env(env_id: str, env_config: dict[str, Any]) -> TurnBasedEnv | None:
    """The env of `env_id` as a :class:`TurnBasedEnv`, or None when it is not turn-based."""
    entry = registry.get_env(env_id)
    if entry is None or not issubclass(entry.load(), PettingZooEnv):  # only these build one
        return None
    env = entry.load()({**env_config, **entry.bound_config})
    if isinstance(env, TurnBasedEnv):
        return env
    close = getattr(env, "close", None)
    if callable(close):
        close()
    return None


def versus_random(checkpoint: str | Path, games: int, seed: int = 0) -> dict[str, Any] | None:
    """A checkpoint's games against random play, in the evaluation's result shape.

    None when its env is not turn-based. ``scores`` has the policy's and a random
    player's mean return (``vs_random``: the difference); ``details.versus_random`` the
    win/draw/loss rates over `games` games (seats alternating) of both.

    Raises:
        PolicyExportError: the export is missing or corrupt.
    """
    manifest = read_manifest(checkpoint)
    env_id, env_config = manifest["env"]["id"], dict(manifest["env"]["config"])
    env = turn_based_env(env_id, env_config)
    if env is None:
        return None
    player = TurnPlayer(checkpoint)
    played = {
        "policy": play_versus_random(env, player, games, seed),
        RANDOM_PLAYER: play_versus_random(env, None, games, seed),
    }
    env.close()
    returns = {name: np.asarray(record.pop("returns")) for name, record in played.items()}
    random_mean = float(returns[RANDOM_PLAYER].mean())
    scores = {
        name: {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "normalized": None,
            "vs_random": float(values.mean()) - random_mean,
        }
        for name, values in returns.items()
    }
    return {
        "kind": "versus_random",
        "env": {"id": env_id, "config": env_config},
        "algorithm": manifest.get("algorithm", "?"),
        "level": "default",
        "checkpoint": str(checkpoint),
        "games": games,
        "seed": seed,
        "policies": list(played),
        "scores": scores,
        "weights": {},
        "dimensions": {name: {"overall": None} for name in played},
        "not_applicable": {
            "the evaluation dimensions": "a turn-based game: scored by games against a player "
            "drawing uniformly among the legal moves (details.versus_random)"
        },
        "details": {"versus_random": played},
    }


def versus_markdown(result: dict[str, Any]) -> str:
    """A short report of :func:`versus_random`'s result (markdown)."""
    lines = [
        f"# {result['env']['id']} / {result['algorithm']}: games against random play",
        "",
        f"{result['games']} games per player, seats alternating (seed {result['seed']}); "
        "the opponents draw uniformly among the legal moves.",
        "",
        "| player | win | draw | loss | mean return | illegal moves |",
        "|---|---|---|---|---|---|",
    ]
    for name, record in result["details"]["versus_random"].items():
        lines.append(
            f"| {name} | {record['win']:.3f} | {record['draw']:.3f} | {record['loss']:.3f} | "
            f"{record['mean_return']:.3f} | {record['illegal_moves']} |"
        )
    return "\n".join(lines) + "\n"
