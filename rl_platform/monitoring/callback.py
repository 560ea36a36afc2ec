"""Episode-window metrics and the action-distribution callback of env runners."""

from __future__ import annotations

from typing import Any

ACTIONS_KEY = "actions"
ACTION_SAMPLE_PER_EPISODE = 16  # action values per episode, module and dim kept for histograms
ACTION_SAMPLE_PER_CALL = 256  # at most this many of them logged per module, dim and sample()


class EpisodeWindow:
    """Per-episode values held until ``on_sample_end``, then logged as windowed means.

    A windowed mean over the last ``window`` episodes only ever sees the last
    ``window`` values logged, so logging just those at the end of each ``sample()``
    reduces to the same figure as logging every episode's value as it ends, at a
    fraction of the cost when a batched runner ends hundreds of episodes per call.
    """

    def __init__(self) -> None:
        self._values: dict[tuple[str, ...], list[float]] = {}

    def add(self, key: tuple[str, ...], value: float) -> None:
        """One episode's value of metric `key`."""
        self._values.setdefault(key, []).append(value)

    def flush(self, metrics_logger: Any, window: int) -> None:
        """Log the last `window` values of each metric (``reduce="mean"``) and forget all."""
        values, self._values = self._values, {}
        if metrics_logger is None:
            return
        for key, series in values.items():
            for value in series[-window:]:
                metrics_logger.log_value(key, value, reduce="mean", window=window)


def smoothing_window(env_runner: Any) -> int:
    """The episodes RLlib averages its episode metrics over (100 unless configured)."""
    config = getattr(env_runner, "config", None)
    return int(getattr(config, "metrics_num_episodes_for_smoothing", 100) or 100)


def episode_actions(sa_episode: Any) -> Any:
    """An agent episode's actions as one array (read from a numpy'ized buffer directly)."""
    import numpy as np

    buffer = sa_episode.actions
    if getattr(buffer, "finalized", False) and isinstance(buffer.data, np.ndarray):
        return buffer.data[buffer.lookback :]
    return np.asarray(sa_episode.get_actions())


def action_metrics_callback() -> type:
    """The RLlib callback class that logs each policy's action distribution.

    Per module, as means over the last ``metrics_num_episodes_for_smoothing`` episodes
    (``env_runners/actions/<module>/...``, like RLlib's episode metrics): the frequency
    of each discrete action (``p_<k>``), or each continuous dimension's mean, std and the
    share of values at or beyond the Box bounds (``mean_<d>``, ``std_<d>``,
    ``saturated``); and up to :data:`ACTION_SAMPLE_PER_EPISODE` sampled values per
    episode and dimension, of which the latest :data:`ACTION_SAMPLE_PER_CALL` per
    ``sample()`` call are logged (``sample_<d>``, a list Tune's TensorBoard logger draws
    as a histogram). Episodes' actions are kept as they end and summarized at
    ``on_sample_end``, only for the episodes the window keeps (:class:`EpisodeWindow`):
    a batched runner ends hundreds of episodes per call. Made on demand so that
    importing this module stays free of Ray.
    """
    global _ACTION_CALLBACK
    if _ACTION_CALLBACK is not None:
        return _ACTION_CALLBACK
    import gymnasium as gym
    import numpy as np
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class ActionMetricsCallback(RLlibCallback):
        """Keeps each episode's actions per module; logs their statistics per sample() call."""

        def __init__(self) -> None:
            super().__init__()
            self._rng = np.random.default_rng(0)
            self._episodes: dict[str, list[tuple[np.ndarray, Any]]] = {}

        def on_episode_end(self, *, episode, env_runner=None, metrics_logger=None, **kwargs):  # noqa: D102
            if metrics_logger is None or not hasattr(episode, "agent_episodes"):
                return
            by_module: dict[str, list[Any]] = {}
            for agent, sa_episode in episode.agent_episodes.items():
                actions = episode_actions(sa_episode)
                if actions.size:
                    by_module.setdefault(episode.module_for(agent), []).append(actions)
            for module, parts in by_module.items():
                space = _action_space(getattr(env_runner, "env", None), episode, module)
                self._episodes.setdefault(module, []).append((parts, space))

        def on_sample_end(self, *, env_runner=None, metrics_logger=None, **kwargs):  # noqa: D102
            episodes, self._episodes = self._episodes, {}
            if metrics_logger is None:
                return
            window = smoothing_window(env_runner)
            for module, kept in episodes.items():
                # Only the last `window` episodes count in a windowed mean: the others
                # need no statistics at all (see EpisodeWindow).
                values = EpisodeWindow()
                samples: dict[int, list[np.ndarray]] = {}
                for parts, space in kept[-window:]:
                    self._episode(module, np.concatenate(parts), space, values, samples)
                values.flush(metrics_logger, window)
                for d, picked in samples.items():
                    picked = np.concatenate(picked)[-ACTION_SAMPLE_PER_CALL:]
                    for value in picked.tolist():
                        metrics_logger.log_value(
                            (ACTIONS_KEY, module, f"sample_{d}"), value, reduce="item_series"
                        )

        def _episode(self, module, values, space, out, samples) -> None:
            if isinstance(space, gym.spaces.Discrete) or values.dtype.kind in "iu":
                counts = np.bincount(values.astype(int).ravel(), minlength=_n(space))
                for k, share in enumerate((counts / counts.sum()).tolist()):
                    out.add((ACTIONS_KEY, module, f"p_{k}"), share)
                return
            flat = values.reshape(len(values), -1)
            for d, (mean, std) in enumerate(zip(flat.mean(0).tolist(), flat.std(0).tolist())):
                out.add((ACTIONS_KEY, module, f"mean_{d}"), mean)
                out.add((ACTIONS_KEY, module, f"std_{d}"), std)
            picked = flat[self._rng.integers(0, len(flat), ACTION_SAMPLE_PER_EPISODE)]
            for d in range(flat.shape[1]):
                samples.setdefault(d, []).append(picked[:, d])
            if isinstance(space, gym.spaces.Box):
                low, high = space.low.reshape(-1), space.high.reshape(-1)
                saturated = (flat <= low) | (flat >= high)
                out.add((ACTIONS_KEY, module, "saturated"), float(saturated.mean()))

    _ACTION_CALLBACK = ActionMetricsCallback
    return ActionMetricsCallback


_ACTION_CALLBACK: type | None = None


def _action_space(env: Any, episode: Any, module: str) -> Any:
    """The action space of one of `module`'s agents (None when it cannot be found)."""
    agent = next((a for a in episode.agent_episodes if episode.module_for(a) == module), None)
    for candidate in (getattr(env, "unwrapped", None), env):
        spaces = getattr(candidate, "action_spaces", None)
        if isinstance(spaces, dict) and agent in spaces:
            return spaces[agent]
        envs = getattr(candidate, "envs", None)
        if envs:
            inner = getattr(envs[0], "unwrapped", envs[0])
            if agent in getattr(inner, "action_spaces", {}):
                return inner.action_spaces[agent]
    return None


def _n(space: Any) -> int:
    return int(getattr(space, "n", 0) or 0)
