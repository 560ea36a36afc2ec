"""Per-copy bookkeeping across rollout fragments: episode metrics and observation blocks.

:class:`EpisodeTally` keeps each copy's running episode return and wall time (so no
chunk is kept until its episode ends); :class:`BlockPool` hands out rollout observation
blocks again once nothing holds them.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from rl_platform.sampling.episodes import EpisodeRecord, Rollout


class EpisodeTally:
    """Each copy's running episode return per agent and wall time, across fragments.

    What RLlib's ``get_metrics`` reads from an episode's earlier chunks, kept as
    arrays so that the runner need not keep those chunks (and the rollout memory
    they share) until the episode ends.
    """

    def __init__(self, copies: int, agents: int) -> None:
        self.returns = np.zeros((copies, agents))
        self.seconds = np.zeros(copies)
        self.acted = np.zeros((copies, agents), dtype=np.int64)  # with agents that leave

    def reset(self) -> None:
        """Every copy starts a new episode."""
        self.returns[:] = 0.0
        self.seconds[:] = 0.0
        self.acted[:] = 0

    def add(self, rollout: Rollout, env_t: np.ndarray, seconds: float) -> list[EpisodeRecord]:
        """Fold in a rollout of `seconds` (copy b had run ``env_t[b]`` steps before it).

        Returns the records of the episodes that ended in it, ordered by copy, then step
        (the order of :func:`episodes_from_rollout`'s finished chunks). With
        ``rollout.alive`` the records also count each agent's steps (an agent that left
        has no reward after, so its return stops there).
        """
        copies = np.arange(len(env_t))
        totals = np.cumsum(rollout.rewards, axis=0, dtype=np.float64)  # (T, B, N)
        acted = None if rollout.alive is None else np.cumsum(rollout.alive[:-1], axis=0)
        steps, copy = np.nonzero(rollout.terminated | rollout.truncated)
        order = np.lexsort((steps, copy))
        last = np.full(len(env_t), -1)
        records = []
        for t, b in zip(steps[order].tolist(), copy[order].tolist()):
            before = last[b]
            returns = totals[t, b] + (self.returns[b] if before < 0 else -totals[before, b])
            length = t - before + (int(env_t[b]) if before < 0 else 0)
            record = EpisodeRecord(length, returns, float(self.seconds[b]) + seconds)
            if acted is not None:
                record.agent_lengths = acted[t, b] + (
                    self.acted[b] if before < 0 else -acted[before, b]
                )
            records.append(record)
            last[b] = t
        ended = last >= 0
        self.returns[ended] = 0.0
        self.seconds[ended] = 0.0
        self.returns += totals[-1] - np.where(
            ended[:, None], totals[np.maximum(last, 0), copies], 0.0
        )
        self.seconds += seconds
        if acted is not None:
            self.acted[ended] = 0
            self.acted += acted[-1] - np.where(
                ended[:, None], acted[np.maximum(last, 0), copies], 0
            )
        return records


class BlockPool:
    """Rollout observation blocks, handed out again once nothing else holds them.

    A rollout's episodes are views of its block, so the block is free when they (and
    any view or tensor made from them) are gone, which its arrays' reference counts
    tell. Reusing it saves the first-write page faults of fresh memory (5% of a
    1024-copy fragment's time on the development machine). A block still held (by a
    replay buffer keeping episodes, say) is never handed out; the pool remembers at
    most `size` blocks.
    """

    def __init__(self, make: Any, size: int = 2) -> None:
        self._make = make
        self._size = size
        self._blocks: list[tuple[Any, tuple[np.ndarray, ...], list[int]]] = []

    @staticmethod
    def _refs(arrays: tuple[np.ndarray, ...]) -> list[int]:
        return [sys.getrefcount(array) for array in arrays]

    def take(self, rows: int) -> Any:
        """A block of `rows` rows (``make(rows)``), a free one if the pool has it."""
        for block, arrays, free in self._blocks:
            if len(arrays[0]) == rows and self._refs(arrays) == free:
                return block
        block = self._make(rows)
        arrays = tuple(block.values()) if isinstance(block, dict) else (block,)
        # What the counts are when only the pool holds the block (as in the loop above).
        self._blocks = [*self._blocks[1 - self._size :], (block, arrays, [])]
        self._blocks[-1][2].extend(self._refs(arrays))
        return block
