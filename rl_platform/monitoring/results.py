"""Reading RLlib/Tune results: flattening, finite numbers, the per-iteration monitor row."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from rl_platform.stopping import ENV_STEPS_KEY

ALL_MODULES = "__all_modules__"

# Episode-return figures scanned for NaN/inf (prefixes under env_runners/).
RETURN_PREFIXES = (
    "env_runners/episode_return_",
    "env_runners/agent_episode_returns_mean/",
    "env_runners/module_episode_returns_mean/",
)
# Learner stats shown per module, by figure panel: (panel title, stat names).
LOSS_STATS = {
    "policy loss": ("policy_loss", "actor_loss"),
    "value loss": ("vf_loss", "qf_loss", "td_error_abs_mean"),
    "KL": ("mean_kl_loss", "kl"),
    "total loss": ("total_loss",),
}
VALUE_STATS = ("vf_predictions", "vf_explained_var", "q_mean", "q_taken_mean", "q_policy_mean")
# monitor_row's figures that metrics.csv holds under the name it had before it took them.
TABLE_NAMES = {"evaluation/score": "eval_score"}
TABLE_PREFIXES = {"reward/": "reward_"}
EXPLORATION_STATS = ("entropy", "epsilon", "exploration_noise", "noise_scale", "curr_entropy_coeff")


def flatten_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten a nested result dict into ``a/b/c`` keys (Tune's ``flatten_dict``).

    Already-flat keys stay as they are; Ray is imported on the first call only.
    """
    from ray.tune.utils import flatten_dict

    return flatten_dict(dict(result), delimiter="/")


def to_number(value: Any) -> float | None:
    """``value`` as a float if it is a real number (bools and strings are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def finite(value: Any) -> float | None:
    """``value`` as a float if it is a finite real number, else None."""
    number = to_number(value)
    return number if number is not None and math.isfinite(number) else None


def learner_stats(flat: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """``(module, stat, value)`` for every ``learners/<module>/<stat>`` (stat may hold ``/``)."""
    for key, value in flat.items():
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[0] == "learners":
            yield parts[1], parts[2], value


def env_steps_lifetime(flat: Mapping[str, Any]) -> float | None:
    """The lifetime env steps sampled (top level or under ``env_runners/``), if reported."""
    steps = finite(flat.get(ENV_STEPS_KEY))
    return steps if steps is not None else finite(flat.get(f"env_runners/{ENV_STEPS_KEY}"))


def fresh_evaluation(flat: Mapping[str, Any]) -> dict[str, float]:
    """Numeric ``evaluation/*`` figures, unless carried forward from an earlier iteration."""
    iteration = flat.get("training_iteration")
    evaluated = flat.get("evaluation/iteration")
    if evaluated is not None and iteration is not None and evaluated != iteration:
        return {}
    out = {}
    for key, value in flat.items():
        number = to_number(value)
        if key.startswith("evaluation/") and key != "evaluation/iteration" and number is not None:
            out[key] = number
    return out


def monitor_row(result: Mapping[str, Any]) -> dict[str, float]:
    """The figures watched per iteration and per policy, flattened into one row.

    Keys: ``iteration``, ``env_steps``, ``env_steps_per_s`` (this iteration's sampled env
    steps over ``time_this_iter_s``), ``time_total_s``, ``episode_return_mean`` / ``_min`` /
    ``_max``, ``episode_len_mean``, ``return/<agent>``, ``module_return/<module>``,
    ``reward/<component>`` (``env_runners/rewards/*``), ``<stat>/<module>`` for the learner stats in
    :data:`LOSS_STATS`, :data:`VALUE_STATS` and :data:`EXPLORATION_STATS` that the
    algorithm logs (PPO/MAPPO: entropy, policy and value losses, KL, explained variance;
    QMIX/IQL: TD error and Q means under the mixer module; MADDPG: actor losses and critic
    Q means), ``curriculum/level`` / ``curriculum/score`` and ``evaluation/*`` (only in the
    iteration that ran the evaluation). Missing figures are left out, not NaN-filled.

    Args:
        result: One Tune/RLlib result, nested or flattened with ``/``.
    """
    flat = flatten_result(result)
    row: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        number = to_number(value)
        if number is not None:
            row[name] = number

    put("iteration", flat.get("training_iteration"))
    put("env_steps", env_steps_lifetime(flat))
    sampled = finite(flat.get("env_runners/num_env_steps_sampled"))
    elapsed = finite(flat.get("time_this_iter_s"))
    if sampled is not None and elapsed:
        row["env_steps_per_s"] = sampled / elapsed
    put("time_total_s", flat.get("time_total_s"))
    for stat in ("episode_return_mean", "episode_return_min", "episode_return_max"):
        put(stat, flat.get(f"env_runners/{stat}"))
    put("episode_len_mean", flat.get("env_runners/episode_len_mean"))
    for key, value in flat.items():
        for prefix, name in (
            ("env_runners/agent_episode_returns_mean/", "return/"),
            ("env_runners/module_episode_returns_mean/", "module_return/"),
            ("env_runners/rewards/", "reward/"),
            ("env_runners/actions/", "actions/"),  # per module: p_k / mean_d, std_d, saturated
        ):
            if key.startswith(prefix) and "/sample_" not in key:
                put(name + key[len(prefix) :], value)
    wanted = {*EXPLORATION_STATS, *VALUE_STATS}
    wanted.update(stat for stats in LOSS_STATS.values() for stat in stats)
    for module, stat, value in learner_stats(flat):
        if module != ALL_MODULES and stat in wanted:
            put(f"{stat}/{module}", value)
    for stat in ("epsilon", "exploration_noise", "noise_scale"):
        put(f"{stat}/env_runners", flat.get(f"env_runners/{stat}"))
    put("curriculum/level", flat.get("curriculum/level"))
    put("curriculum/score", flat.get("curriculum/score"))
    row.update(fresh_evaluation(flat))
    return row


def table_row(base: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the run's table (``metrics.csv``): `base`, then :func:`monitor_row`'s rest.

    `base` (the progress row's columns) keeps its values and its order; a figure of
    :func:`monitor_row` is added under its :data:`TABLE_NAMES` / :data:`TABLE_PREFIXES`
    name (``reward_<part>``, ``eval_score``) unless `base` has that column already.
    """
    row = dict(base)
    for name, value in monitor_row(result).items():
        column = TABLE_NAMES.get(name, name)
        for prefix, table in TABLE_PREFIXES.items():
            if name.startswith(prefix):
                column = table + name[len(prefix) :]
        row.setdefault(column, value)
    return row
