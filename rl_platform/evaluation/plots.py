"""The evaluation report's PNG plots, one function per plot (None: nothing to draw).

Plots are drawn on :class:`matplotlib.figure.Figure` objects without pyplot, so no GUI
backend is touched, nothing global is left open, and reports can be written from threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from rl_platform.evaluation.result_data import (
    DIMENSION_TITLES,
    DIMENSIONS,
    ROBUSTNESS_TESTS,
    TRAINED,
    as_array,
    as_number,
    fmt,
    lookup,
    lookup_dict,
    policies_of,
    union_keys,
)

MAX_ACTION_PANELS = 4  # rows of the actions plot: the trained policy and the next baselines
MAX_LEGEND_AGENTS = 8  # more agents than this are drawn without one legend entry each
SHORT_TRACE = 50  # traces up to this many steps get a marker per step
DPI = 110


def policy_colors(names: Sequence[str]) -> dict[str, Any]:
    """One stable colour per name, from the tab10 cycle."""
    cmap = matplotlib.colormaps["tab10"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


# -- plots --------------------------------------------------------------------------------


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _grouped_bars(
    ax: Axes,
    groups: Sequence[str],
    series: dict[str, Sequence[Any]],
    colors: dict[str, Any],
    errors: dict[str, Sequence[Any]] | None = None,
    horizontal: bool = False,
) -> None:
    """One cluster of bars per group, one bar per series; None values are marked "n/a"."""
    width = 0.8 / max(len(series), 1)
    for j, (name, values) in enumerate(series.items()):
        offset = -0.4 + width * (j + 0.5)
        positions, heights, errs = [], [], []
        for i, raw in enumerate(values):
            value = as_number(raw)
            if value is None:
                xy = (0, i + offset) if horizontal else (i + offset, 0)
                ax.annotate(
                    "n/a",
                    xy,
                    ha="left" if horizontal else "center",
                    va="center" if horizontal else "bottom",
                    rotation=0 if horizontal else 90,
                    fontsize=7,
                    color="0.4",
                )
                continue
            positions.append(i + offset)
            heights.append(value)
            errs.append((as_number(errors[name][i]) or 0.0) if errors else 0.0)
        bar_err = errs if errors else None
        if horizontal:
            ax.barh(positions, heights, width, xerr=bar_err, color=colors[name], label=name)
        else:
            ax.bar(positions, heights, width, yerr=bar_err, color=colors[name], label=name)
    ticks = list(range(len(groups)))
    if horizontal:
        ax.set_yticks(ticks, groups)
        ax.set_ylim(len(groups) - 0.5, -0.5)  # first group on top
        ax.axvline(0, color="0.3", lw=0.8)
    else:
        ax.set_xticks(ticks, groups)
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.axhline(0, color="0.3", lw=0.8)


def _outside_legend(ax: Axes) -> None:
    """The legend right of the axes, so it never covers a bar (constrained layout makes room)."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _footnote(fig: Figure, notes: list[str]) -> None:
    """Lines under the plot (what is n/a and why); the figure grows to hold them."""
    fig.supxlabel("\n".join(notes), x=0.01, ha="left", fontsize=7, color="0.35")
    fig.set_figheight(fig.get_figheight() + 0.15 * len(notes))


def plot_learning_curve(result: dict, path: Path) -> Path | None:
    """The greedy score of each kept checkpoint against env steps, and its normalized curve.

    Top panel: each kept checkpoint's greedy score on the suite's clean episodes at the
    main level, with its 95% t interval, and each baseline's score there as a dashed line.
    Bottom panel: the normalized curve (0 = random, 1 = best baseline) with the area under
    it shaded (the sample-efficiency figure).

    Returns:
        `path`, or None when the result holds no greedy curve.
    """
    se = lookup_dict(result, "details", "sample_efficiency")
    curve = se.get("curve")
    steps = as_array(lookup(curve, "env_steps"))
    if steps is None or steps.ndim != 1:
        return None
    n = len(steps)

    def series(key: str) -> np.ndarray | None:
        arr = as_array(lookup(curve, key))
        return arr if arr is not None and arr.shape == (n,) else None

    policies = policies_of(result)
    colors = policy_colors(policies or [TRAINED])
    color = colors.get(TRAINED, "C0")
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    raw_ax, norm_ax = fig.subplots(2, 1, sharex=True)
    score, low, high = series("score"), series("low"), series("high")
    if score is not None:
        errors = None
        if low is not None and high is not None:
            errors = np.vstack([np.nan_to_num(score - low), np.nan_to_num(high - score)])
        raw_ax.errorbar(
            steps, score, yerr=errors, color=color, marker="o", capsize=3, label=TRAINED
        )
    level = result.get("level")
    for name in policies:
        mean = as_number(lookup(result, "scores", name, "mean"))
        if name != TRAINED and mean is not None:
            label = f"{name} ({level})" if level else name
            raw_ax.axhline(mean, ls="--", lw=1, color=colors[name], label=label)
    raw_ax.set_ylabel("greedy mean agent return (95% CI)")
    raw_ax.set_title("Greedy score of each kept checkpoint")
    raw_ax.legend(fontsize=8, loc="best")
    normalized = series("normalized")
    if normalized is not None:
        norm_ax.plot(steps, normalized, color=color, marker="o")
        norm_ax.fill_between(
            steps,
            0,
            np.clip(np.nan_to_num(normalized), 0.0, 1.0),
            color=color,
            alpha=0.25,
            label=f"AUC = {fmt(se.get('auc'))}",
        )
        norm_ax.legend(fontsize=8, loc="best")
    norm_ax.axhline(0, color="0.5", lw=0.8, ls=":")
    norm_ax.axhline(1, color="0.2", lw=0.8, ls="--")
    norm_ax.set_ylabel("normalized (0 random, 1 best baseline)")
    norm_ax.set_xlabel("env steps")
    norm_ax.set_title("Normalized greedy score")
    return _save(fig, path)


def plot_dimensions(result: dict, path: Path) -> Path | None:
    """Grouped bars: the dimensions of overall and overall itself, one bar per policy.

    Returns:
        `path`, or None when the result holds no dimension scores.
    """
    dims = lookup_dict(result, "dimensions")
    policies = [p for p in policies_of(result) if isinstance(dims.get(p), dict)]
    if not policies:
        return None
    keys = (*DIMENSIONS, "overall")
    fig = Figure(figsize=(max(8, 1.2 * len(keys) * max(1, len(policies) / 3)) + 1.5, 4.5))
    ax = fig.subplots()
    series = {p: [dims[p].get(k) for k in keys] for p in policies}
    _grouped_bars(
        ax, [DIMENSION_TITLES[k] for k in keys], series, policy_colors(policies_of(result))
    )
    ax.set_ylabel("dimension score")
    ax.set_title("Evaluation dimensions")
    _outside_legend(ax)
    missing = lookup_dict(result, "not_applicable")
    notes = [f"n/a: {DIMENSION_TITLES[k]}: {missing[k]}" for k in keys if k in missing]
    if notes:
        _footnote(fig, notes)
    fig.set_layout_engine("constrained")
    return _save(fig, path)


def plot_reward_components(result: dict, path: Path) -> Path | None:
    """Horizontal grouped bars: each unweighted reward component, one bar per policy.

    Returns:
        `path`, or None when the result holds no reward components.
    """
    components = lookup_dict(result, "components")
    policies = [p for p in policies_of(result) if isinstance(components.get(p), dict)]
    policies += [p for p in components if p not in policies and isinstance(components[p], dict)]
    names = union_keys(components[p] for p in policies)
    if not names:
        return None
    height = min(2 + 0.22 * len(names) * len(policies), 24)
    fig = Figure(figsize=(8, height), layout="constrained")
    ax = fig.subplots()
    series = {p: [components[p].get(c) for c in names] for p in policies}
    _grouped_bars(ax, names, series, policy_colors(policies), horizontal=True)
    ax.set_xlabel("per-agent mean episode sum (unweighted)")
    ax.set_title("Reward components")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _agent_colors(n: int) -> dict[str, Any]:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
    return {f"agent {i}": cmap(i % 10 if n <= 10 else i / max(n - 1, 1)) for i in range(n)}


def _action_names(result: dict, spec: dict, key: str, n: int) -> list[str]:
    """The env's action names (``env.action_names`` in the result), else the spec's `key`.

    Either is used only when it has `n` entries; ``a<k>`` otherwise.
    """
    for names in (lookup(result, "env", "action_names"), spec.get(key)):
        if isinstance(names, list | tuple) and len(names) == n:
            return [str(name) for name in names]
    return [f"a{k}" for k in range(n)]


def _plot_discrete_actions(ax: Axes, spec: dict, policy: str, result: dict) -> bool:
    counts = as_array(spec.get("counts"))
    if counts is None or counts.ndim != 2:
        return False
    labels = _action_names(result, spec, "labels", counts.shape[1])
    totals = counts.sum(axis=1, keepdims=True)
    frequency = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    colors = _agent_colors(len(frequency))
    series = {agent: list(row) for agent, row in zip(colors, frequency)}
    _grouped_bars(ax, [str(label) for label in labels], series, colors)
    ax.set_ylabel("share of steps")
    ax.set_title(policy)
    if len(frequency) <= MAX_LEGEND_AGENTS:
        ax.legend(fontsize=7)
    return True


def _plot_continuous_actions(axes: Sequence[Axes], spec: dict, policy: str, result: dict) -> bool:
    counts = as_array(spec.get("counts"))
    edges = as_array(spec.get("bins"))
    if counts is None or edges is None or counts.ndim != 3 or counts.shape[2] != len(edges) - 1:
        return False
    dims = _action_names(result, spec, "dims", counts.shape[1])
    colors = _agent_colors(counts.shape[0])
    for d, ax in enumerate(axes[: counts.shape[1]]):
        for color, agent_counts in zip(colors.values(), counts[:, d]):
            total = agent_counts.sum()
            ax.stairs(agent_counts / total if total else agent_counts, edges, color=color)
        ax.set_title(f"{policy}: {dims[d]}", fontsize=9)
        ax.set_ylabel("share of steps")
    if counts.shape[0] <= MAX_LEGEND_AGENTS:
        handles = [Line2D([], [], color=c, label=a) for a, c in colors.items()]
        axes[0].legend(handles=handles, fontsize=7)
    return True


def plot_actions(result: dict, path: Path) -> Path | None:
    """Action distributions: one row per policy, agents as separate series.

    Discrete actions are grouped bars (share of steps per action and agent); continuous
    actions are one histogram per action dimension with a step line per agent. The
    trained policy and the first baselines get a row, up to :data:`MAX_ACTION_PANELS`.

    Returns:
        `path`, or None when the result holds no action statistics.
    """
    actions = lookup_dict(result, "actions")
    names = [p for p in policies_of(result) if isinstance(actions.get(p), dict)]
    names += [p for p in actions if p not in names and isinstance(actions[p], dict)]
    names = names[:MAX_ACTION_PANELS]
    if not names:
        return None
    cols = max(
        len(actions[p].get("dims") or [None]) if actions[p].get("kind") == "continuous" else 1
        for p in names
    )
    fig = Figure(figsize=(max(7, 3.8 * cols), 2.9 * len(names)), layout="constrained")
    grid = fig.subplots(len(names), cols, squeeze=False)
    drawn = False
    for row, name in zip(grid, names):
        spec = actions[name]
        if spec.get("kind") == "discrete":
            ok = _plot_discrete_actions(row[0], spec, name, result)
            used = 1
        else:
            ok = _plot_continuous_actions(row, spec, name, result)
            used = len(spec.get("dims") or [None]) if ok else 1
        if not ok:
            row[0].text(0.5, 0.5, f"{name}: n/a", ha="center", va="center")
            row[0].set_axis_off()
        for ax in row[used:]:
            ax.set_axis_off()
        drawn = drawn or ok
    if not drawn:
        return None
    fig.suptitle("Actions")
    return _save(fig, path)


def plot_trace(result: dict, path: Path) -> Path | None:
    """One recorded episode: one panel per traced field plus the per-step mean reward.

    Per-agent fields get one line per agent (colour = agent), scalar fields one dark line.
    The trained policy is solid; the first baseline with a trace is dashed on the same panels.

    Returns:
        `path`, or None when the result holds no trace.
    """
    trace = lookup_dict(result, "trace")
    available = [p for p in policies_of(result) if isinstance(trace.get(p), dict)]
    available += [p for p in trace if p not in available and isinstance(trace[p], dict)]
    if not available:
        return None
    shown = available[:2]  # the trained policy (if traced) and the first traced baseline
    panels = union_keys(lookup_dict(trace, name, "fields") for name in shown)
    if any(as_array(trace[name].get("rewards")) is not None for name in shown):
        panels.append("rewards")
    if not panels:
        return None
    n_agents = 1
    for name in shown:
        for values in lookup_dict(trace, name, "fields").values():
            arr = as_array(values)
            if arr is not None and arr.ndim == 2:
                n_agents = max(n_agents, arr.shape[1])
    agent_colors = list(_agent_colors(n_agents).values())
    fig = Figure(figsize=(9, 1.8 * len(panels) + 1), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    styles = dict(zip(shown, ("-", "--")))
    for ax, panel in zip(axes, panels):
        for name in shown:
            if panel == "rewards":
                values = trace[name].get("rewards")
            else:
                values = lookup_dict(trace, name, "fields").get(panel)
            arr = as_array(values)
            if arr is None:
                continue
            marker = "." if len(arr) <= SHORT_TRACE else None  # dots show a few steps
            if arr.ndim == 1:  # a field shared by all agents
                ax.plot(arr, ls=styles[name], marker=marker, color="0.15", lw=1.2)
            elif arr.ndim == 2:
                for i in range(arr.shape[1]):
                    ax.plot(arr[:, i], ls=styles[name], marker=marker, color=agent_colors[i], lw=1)
        ax.set_ylabel("mean reward" if panel == "rewards" else panel, fontsize=8)
    axes[-1].set_xlabel("step")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = [Line2D([], [], color="0.2", ls=styles[name], label=name) for name in shown]
    if 1 < n_agents <= MAX_LEGEND_AGENTS:
        handles += [Line2D([], [], color=c, label=f"agent {i}") for i, c in enumerate(agent_colors)]
    axes[0].legend(handles=handles, fontsize=7, ncols=min(len(handles), 5), loc="upper right")
    fig.suptitle("Episode trace")
    return _save(fig, path)


def plot_levels(result: dict, path: Path) -> Path | None:
    """Grouped bars of each policy's mean return (± std) per level; trained levels shaded.

    Returns:
        `path`, or None when the result holds no per-level scores.
    """
    levels = lookup_dict(result, "levels")
    names = [lv for lv in levels if isinstance(levels[lv], dict)]
    if not names:
        return None
    policies = [p for p in policies_of(result) if any(p in levels[lv] for lv in names)]
    policies += [p for p in union_keys(levels[lv] for lv in names) if p not in policies]
    trained = set(result.get("trained_levels") or [])
    fig = Figure(figsize=(max(7, 1.5 * len(names) * max(1, len(policies) / 3)) + 1.5, 4.5))
    ax = fig.subplots()
    for i, level in enumerate(names):
        if level in trained:
            ax.axvspan(i - 0.5, i + 0.5, color="0.92", zorder=0)
    series = {p: [lookup(levels[lv], p, "mean") for lv in names] for p in policies}
    errors = {p: [lookup(levels[lv], p, "std") for lv in names] for p in policies}
    labels = [f"{lv}\n(trained)" if lv in trained else lv for lv in names]
    _grouped_bars(ax, labels, series, policy_colors(policies), errors=errors)
    ax.set_ylabel("mean agent return (± std)")
    ax.set_title("Score per level (shaded: trained on)")
    _outside_legend(ax)
    fig.set_layout_engine("constrained")
    return _save(fig, path)


def plot_robustness(result: dict, path: Path) -> Path | None:
    """Grouped bars of the share of clean score each policy retains under each test.

    Returns:
        `path`, or None when the result holds no robustness details.
    """
    robustness = lookup_dict(result, "details", "robustness")
    policies = [p for p in policies_of(result) if isinstance(robustness.get(p), dict)]
    policies += [p for p in robustness if p not in policies and isinstance(robustness[p], dict)]
    tests = [t for t in union_keys(robustness[p] for p in policies) if t in ROBUSTNESS_TESTS]
    tests += [t for t in union_keys(robustness[p] for p in policies) if t not in tests]
    if not tests:
        return None
    fig = Figure(figsize=(max(7, 1.6 * len(tests) * max(1, len(policies) / 3)) + 1.5, 4.5))
    ax = fig.subplots()
    series = {p: [lookup(robustness[p], t, "retained") for t in tests] for p in policies}
    _grouped_bars(ax, tests, series, policy_colors(policies))
    ax.axhline(1, color="0.2", lw=0.8, ls="--")
    missing = lookup_dict(result, "not_applicable")
    notes = [f"n/a: {t}: {missing[t]}" for t in tests if t in missing]
    if notes:
        _footnote(fig, notes)
    ax.set_ylabel("retained (perturbed / clean score)")
    ax.set_title("Robustness")
    _outside_legend(ax)
    fig.set_layout_engine("constrained")
    return _save(fig, path)


PLOTS: dict[str, Callable[[dict, Path], Path | None]] = {
    "learning_curve": plot_learning_curve,
    "dimensions": plot_dimensions,
    "reward_components": plot_reward_components,
    "actions": plot_actions,
    "trace": plot_trace,
    "levels": plot_levels,
    "robustness": plot_robustness,
}
