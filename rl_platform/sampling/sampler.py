"""The batched sampling loop, without Ray (:class:`BatchedSampler`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from rl_platform.sampling.env import BatchedMultiAgentEnv
from rl_platform.sampling.episodes import Rollout, assign, copy_struct, stack_struct, take
from rl_platform.sampling.tally import BlockPool


class BatchedSampler:
    """The sampling loop over a :class:`BatchedMultiAgentEnv`, without Ray.

    ``act(obs, explore) -> (actions (B, N, ...), extra {name: (B, N, ...)})`` is the
    policy; :class:`BatchedEnvRunner` passes its RLModules' batched forward pass.
    """

    def __init__(self, env: BatchedMultiAgentEnv, rng: np.random.Generator) -> None:
        self.env = env
        self.rng = rng
        self._obs: Any = None
        self._fresh: Any = None  # room for the observations of copies just reset
        self._blocks = BlockPool(env.empty)
        self.needs_reset = True
        # (B,) bool: the copies whose episode ended at the last step (recurrent policies
        # reset their state there before acting); None when none did.
        self.done_rows: np.ndarray | None = None

    def reset(self) -> None:
        """Start new episodes in every copy."""
        self.env.core.reset(self.rng)
        self.env.start_rewards()
        self._obs = self.env.observe()
        self.needs_reset = False
        self.done_rows = None

    def run(
        self,
        act: Any,
        steps: int,
        explore: bool,
        env_actions: Any,
    ) -> Rollout:
        """Take `steps` batched steps; ``env_actions(actions)`` maps sampled to env actions."""
        env, core = self.env, self.env.core
        if self.needs_reset:
            self.reset()
        # Observations are written in place into one (T+1, B, N, ...) block: no
        # per-step arrays to stack afterwards, no per-step allocation.
        obs_rows = self._blocks.take(steps + 1)
        assign(obs_rows, 0, self._obs)
        if self._fresh is None:
            self._fresh = env.empty()
        current = take(obs_rows, 0)  # what the agents act on
        actions, rewards, terms, truncs = [], [], [], []
        # Cores whose agents can leave: alive[t] = the agents acting at step t (row T:
        # after the last step); the others' rewards are zeroed.
        alive = None
        if env.alive is not None:
            alive = np.empty((steps + 1, env.num_envs, len(env.possible_agents)), dtype=bool)
            alive[0] = env.alive()
        extras: dict[str, list[np.ndarray]] = defaultdict(list)
        starts: dict[tuple[int, int], Any] = {}
        summaries: dict[tuple[int, int], dict[str, Any]] = {}
        for t in range(steps):
            sampled, extra = act(current, explore)
            to_env = env_actions(sampled)
            result = core.step(to_env, self.rng)
            reward = env.compose_rewards(result, to_env)
            done = result.terminated | result.truncated
            self.done_rows = done if done.any() else None
            current = env.observe(out=take(obs_rows, t + 1))  # final ones included
            if done.any():
                rows = np.flatnonzero(done)
                for b, summary in zip(rows.tolist(), env.summaries(rows)):
                    summaries[(t, b)] = summary
                core.reset(self.rng, mask=done)
                env.start_rewards(done)
                # Every copy's observation again: the others' are unchanged.
                current = env.observe(out=self._fresh)
                first = take(current, rows)  # a copy
                for i, b in enumerate(rows.tolist()):
                    starts[(t, b)] = take(first, i)
            if alive is not None:
                alive[t + 1] = env.alive()  # the new episodes' agents where copies reset
                reward *= alive[t]
            actions.append(sampled)
            rewards.append(reward)
            terms.append(result.terminated.copy())
            truncs.append(result.truncated.copy())
            for k, v in extra.items():
                extras[k].append(v)
        self._obs = copy_struct(current)
        return Rollout(
            obs=obs_rows,
            actions=np.stack(actions),
            rewards=np.stack(rewards),
            extra={k: stack_struct(v) for k, v in extras.items()},
            terminated=np.stack(terms),
            truncated=np.stack(truncs),
            starts=starts,
            summaries=summaries,
            alive=alive,
        )
