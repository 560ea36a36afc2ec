"""Turn the result of `rlp evaluate` into a Markdown report, an HTML page and PNG plots.

The result is the JSON-ready dict the evaluation suite builds (the caller writes it to
``evaluation.json``). :func:`write_report` lays it out once as a list of blocks (headings,
paragraphs, tables, images, "not measured" notes) and renders that list twice, so
``report.md`` and ``report.html`` always hold the same tables. Any section of the result
may be missing or None (a bare checkpoint has no learning curve, an env may record no
trace): the report then says "not measured: <reason>" where the section would be.

Plots are drawn on :class:`matplotlib.figure.Figure` objects without pyplot, so no GUI
backend is touched, nothing global is left open, and reports can be written from threads.

Example:
    >>> paths = write_report(result, Path("runs/x/evaluation"))  # doctest: +SKIP
    >>> paths["html"]  # doctest: +SKIP
    PosixPath('runs/x/evaluation/report.html')
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

TRAINED = "policy"
DIMENSIONS = ("sample_efficiency", "generalization", "robustness", "coordination", "adaptability")
DIMENSION_TITLES = {
    "sample_efficiency": "Sample efficiency",
    "generalization": "Generalization",
    "robustness": "Robustness",
    "coordination": "Coordination",
    "adaptability": "Adaptability",
    "overall": "Overall",
}
ROBUSTNESS_TESTS = ("obs_noise", "action_noise", "random_agent", "faulty_agent")
MAX_ACTION_PANELS = 4  # rows of the actions plot: the trained policy and the next baselines
MAX_LEGEND_AGENTS = 8  # more agents than this are drawn without one legend entry each
SHORT_TRACE = 50  # traces up to this many steps get a marker per step
DPI = 110
ABSENT = "absent from the evaluation result"


# -- numbers ------------------------------------------------------------------------------


def fmt(x: Any) -> str:
    """Format a number for a table: 3 significant digits, "n/a" for None or NaN.

    Integers (step counts) are written in full; floats of magnitude 1000 or more are
    rounded to 3 significant digits but written without an exponent (``1234.5`` ->
    ``"1230"``). Strings pass through unchanged.
    """
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        value = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 1000:
        return f"{float(f'{value:.3g}'):.0f}"
    return f"{value:.3g}"


def _number(x: Any) -> float | None:
    """`x` as a finite-or-infinite float, or None for None, NaN, bools and non-numbers."""
    if x is None or isinstance(x, (bool, str)):
        return None
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _array(values: Any) -> np.ndarray | None:
    """A float array of `values` (None -> NaN), or None when empty or ragged."""
    if values is None:
        return None
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.size else None


def _get(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or None where a level is missing, None or not a dict."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _dict(data: Any, *keys: str) -> dict:
    """The dict at ``data[k1][k2]...``; an empty dict when it is missing or not a dict."""
    found = _get(data, *keys)
    return found if isinstance(found, dict) else {}


def _policies(result: dict) -> list[str]:
    """Policy names in report order: the trained policy, then result["policies"] order.

    Names found only in the scores or dimensions sections are appended, so no row is lost
    when "policies" is missing.
    """
    names: list[str] = []
    for name in [
        *(result.get("policies") or []),
        *_dict(result, "scores"),
        *_dict(result, "dimensions"),
    ]:
        if name not in names:
            names.append(name)
    if TRAINED in names:
        names.remove(TRAINED)
        names.insert(0, TRAINED)
    return names


def _union(dicts: Iterable[Any], first: Sequence[str] = ()) -> list[str]:
    """Keys over all dicts in `dicts`, those in `first` leading, then in order of appearance."""
    keys = list(first)
    for d in dicts:
        if isinstance(d, dict):
            keys.extend(k for k in d if k not in keys)
    return keys


def _colors(names: Sequence[str]) -> dict[str, Any]:
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
            value = _number(raw)
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
            errs.append((_number(errors[name][i]) or 0.0) if errors else 0.0)
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


def plot_learning_curve(result: dict, path: Path) -> Path | None:
    """Training score and normalized score against env steps, with the AUC shaded.

    Top panel: the per-agent mean return of each training iteration, with each baseline's
    score at the main level as a dashed horizontal line. Bottom panel: the normalized
    curve (0 = random, 1 = best baseline) with the area under it shaded. Curriculum level
    changes are vertical lines on both panels.

    Returns:
        `path`, or None when the result holds no learning curve.
    """
    se = _dict(result, "details", "sample_efficiency")
    curve = se.get("curve")
    steps = _array(_get(curve, "env_steps"))
    if steps is None or steps.ndim != 1:
        return None
    n = len(steps)

    def series(key: str) -> np.ndarray | None:
        arr = _array(_get(curve, key))
        return arr if arr is not None and arr.shape == (n,) else None

    policies = _policies(result)
    colors = _colors(policies or [TRAINED])
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    raw_ax, norm_ax = fig.subplots(2, 1, sharex=True)
    score = series("score")
    if score is not None:
        raw_ax.plot(steps, score, color=colors.get(TRAINED, "C0"), marker=".", label=TRAINED)
    level = result.get("level")
    for name in policies:
        mean = _number(_get(result, "scores", name, "mean"))
        if name != TRAINED and mean is not None:
            label = f"{name} ({level})" if level else name
            raw_ax.axhline(mean, ls="--", lw=1, color=colors[name], label=label)
    raw_ax.set_ylabel("mean agent return")
    raw_ax.set_title("Training score")
    raw_ax.legend(fontsize=8, loc="best")
    normalized = series("normalized")
    if normalized is not None:
        color = colors.get(TRAINED, "C0")
        norm_ax.plot(steps, normalized, color=color, marker=".")
        norm_ax.fill_between(
            steps,
            0,
            np.nan_to_num(normalized),
            color=color,
            alpha=0.25,
            label=f"AUC = {fmt(se.get('auc'))}",
        )
        norm_ax.legend(fontsize=8, loc="best")
    norm_ax.axhline(0, color="0.5", lw=0.8, ls=":")
    norm_ax.axhline(1, color="0.2", lw=0.8, ls="--")
    norm_ax.set_ylabel("normalized (0 random, 1 best baseline)")
    norm_ax.set_xlabel("env steps")
    norm_ax.set_title("Normalized score")
    levels = curve.get("level") if isinstance(curve, dict) else None
    if isinstance(levels, list) and len(levels) == n:
        for i in range(1, n):
            if levels[i] and levels[i] != levels[i - 1]:
                for ax in (raw_ax, norm_ax):
                    ax.axvline(steps[i], color="0.4", lw=0.8, ls="-.")
                raw_ax.text(
                    steps[i],
                    0.98,
                    f" {levels[i]}",
                    transform=raw_ax.get_xaxis_transform(),
                    va="top",
                    fontsize=8,
                    color="0.3",
                )
    return _save(fig, path)


def plot_dimensions(result: dict, path: Path) -> Path | None:
    """Grouped bars: the five dimensions and the overall score, one bar per policy.

    Returns:
        `path`, or None when the result holds no dimension scores.
    """
    dims = _dict(result, "dimensions")
    policies = [p for p in _policies(result) if isinstance(dims.get(p), dict)]
    if not policies:
        return None
    keys = (*DIMENSIONS, "overall")
    fig = Figure(figsize=(max(8, 1.2 * len(keys) * max(1, len(policies) / 3)), 4.5))
    ax = fig.subplots()
    series = {p: [dims[p].get(k) for k in keys] for p in policies}
    _grouped_bars(ax, [DIMENSION_TITLES[k] for k in keys], series, _colors(_policies(result)))
    ax.set_ylabel("dimension score")
    ax.set_title("Evaluation dimensions")
    ax.legend(fontsize=8, ncols=min(len(policies), 4))
    fig.set_layout_engine("constrained")
    return _save(fig, path)


def plot_reward_components(result: dict, path: Path) -> Path | None:
    """Horizontal grouped bars: each unweighted reward component, one bar per policy.

    Returns:
        `path`, or None when the result holds no reward components.
    """
    components = _dict(result, "components")
    policies = [p for p in _policies(result) if isinstance(components.get(p), dict)]
    policies += [p for p in components if p not in policies and isinstance(components[p], dict)]
    names = _union(components[p] for p in policies)
    if not names:
        return None
    height = min(2 + 0.22 * len(names) * len(policies), 24)
    fig = Figure(figsize=(8, height), layout="constrained")
    ax = fig.subplots()
    series = {p: [components[p].get(c) for c in names] for p in policies}
    _grouped_bars(ax, names, series, _colors(policies), horizontal=True)
    ax.set_xlabel("per-agent mean episode sum (unweighted)")
    ax.set_title("Reward components")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _agent_colors(n: int) -> dict[str, Any]:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
    return {f"agent {i}": cmap(i % 10 if n <= 10 else i / max(n - 1, 1)) for i in range(n)}


def _plot_discrete_actions(ax: Axes, spec: dict, policy: str) -> bool:
    counts = _array(spec.get("counts"))
    if counts is None or counts.ndim != 2:
        return False
    labels = list(spec.get("labels") or range(counts.shape[1]))
    if len(labels) != counts.shape[1]:
        labels = [str(i) for i in range(counts.shape[1])]
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


def _plot_continuous_actions(axes: Sequence[Axes], spec: dict, policy: str) -> bool:
    counts = _array(spec.get("counts"))
    edges = _array(spec.get("bins"))
    if counts is None or edges is None or counts.ndim != 3 or counts.shape[2] != len(edges) - 1:
        return False
    dims = list(spec.get("dims") or [])
    colors = _agent_colors(counts.shape[0])
    for d, ax in enumerate(axes[: counts.shape[1]]):
        for color, agent_counts in zip(colors.values(), counts[:, d]):
            total = agent_counts.sum()
            ax.stairs(agent_counts / total if total else agent_counts, edges, color=color)
        name = dims[d] if d < len(dims) else f"dim {d}"
        ax.set_title(f"{policy}: {name}", fontsize=9)
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
    actions = _dict(result, "actions")
    names = [p for p in _policies(result) if isinstance(actions.get(p), dict)]
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
            ok = _plot_discrete_actions(row[0], spec, name)
            used = 1
        else:
            ok = _plot_continuous_actions(row, spec, name)
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
    trace = _dict(result, "trace")
    available = [p for p in _policies(result) if isinstance(trace.get(p), dict)]
    available += [p for p in trace if p not in available and isinstance(trace[p], dict)]
    if not available:
        return None
    shown = available[:2]  # the trained policy (if traced) and the first traced baseline
    panels = _union(_dict(trace, name, "fields") for name in shown)
    if any(_array(trace[name].get("rewards")) is not None for name in shown):
        panels.append("rewards")
    if not panels:
        return None
    n_agents = 1
    for name in shown:
        for values in _dict(trace, name, "fields").values():
            arr = _array(values)
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
                values = _dict(trace, name, "fields").get(panel)
            arr = _array(values)
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
    levels = _dict(result, "levels")
    names = [lv for lv in levels if isinstance(levels[lv], dict)]
    if not names:
        return None
    policies = [p for p in _policies(result) if any(p in levels[lv] for lv in names)]
    policies += [p for p in _union(levels[lv] for lv in names) if p not in policies]
    trained = set(result.get("trained_levels") or [])
    fig = Figure(figsize=(max(7, 1.5 * len(names) * max(1, len(policies) / 3)), 4.5))
    ax = fig.subplots()
    for i, level in enumerate(names):
        if level in trained:
            ax.axvspan(i - 0.5, i + 0.5, color="0.92", zorder=0)
    series = {p: [_get(levels[lv], p, "mean") for lv in names] for p in policies}
    errors = {p: [_get(levels[lv], p, "std") for lv in names] for p in policies}
    labels = [f"{lv}\n(trained)" if lv in trained else lv for lv in names]
    _grouped_bars(ax, labels, series, _colors(policies), errors=errors)
    ax.set_ylabel("mean agent return (± std)")
    ax.set_title("Score per level (shaded: trained on)")
    ax.legend(fontsize=8, ncols=min(len(policies), 4))
    fig.set_layout_engine("constrained")
    return _save(fig, path)


def plot_robustness(result: dict, path: Path) -> Path | None:
    """Grouped bars of the share of clean score each policy retains under each test.

    Returns:
        `path`, or None when the result holds no robustness details.
    """
    robustness = _dict(result, "details", "robustness")
    policies = [p for p in _policies(result) if isinstance(robustness.get(p), dict)]
    policies += [p for p in robustness if p not in policies and isinstance(robustness[p], dict)]
    tests = [t for t in _union(robustness[p] for p in policies) if t in ROBUSTNESS_TESTS]
    tests += [t for t in _union(robustness[p] for p in policies) if t not in tests]
    if not tests:
        return None
    fig = Figure(figsize=(max(7, 1.6 * len(tests) * max(1, len(policies) / 3)), 4.5))
    ax = fig.subplots()
    series = {p: [_get(robustness[p], t, "retained") for t in tests] for p in policies}
    _grouped_bars(ax, tests, series, _colors(policies))
    ax.axhline(1, color="0.2", lw=0.8, ls="--")
    ax.set_ylabel("retained (perturbed / clean score)")
    ax.set_title("Robustness")
    ax.legend(fontsize=8, ncols=min(len(policies), 4))
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


# -- the document -------------------------------------------------------------------------


@dataclass
class Heading:
    """A section title; level 1 is the page title."""

    text: str
    level: int = 2


@dataclass
class Paragraph:
    """A line of plain text."""

    text: str


@dataclass
class Note:
    """What stands where a section of the result was not measured."""

    reason: str


@dataclass
class Image:
    """A plot, `src` relative to the report's folder."""

    src: str
    caption: str


@dataclass
class Table:
    """Cells as text; `bold` holds the (row, column) of cells to emphasise."""

    headers: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)


Block = Heading | Paragraph | Note | Image | Table


def _bold_best(columns: dict[int, list[float | None]]) -> set[tuple[int, int]]:
    """Cells holding the highest value of their column (ties all bold), 2+ values only."""
    bold = set()
    for col, values in columns.items():
        numbers = [v for v in values if v is not None]
        if len(numbers) >= 2:
            best = max(numbers)
            bold |= {(row, col) for row, v in enumerate(values) if v == best}
    return bold


def _headline(result: dict) -> Table:
    keys = (*DIMENSIONS, "overall")
    headers = ["Policy", "Score (mean ± std)", "Normalized", *(DIMENSION_TITLES[k] for k in keys)]
    rows, columns = [], {c: [] for c in range(1, len(headers))}
    for name in _policies(result):
        score = _dict(result, "scores", name)
        dims = _dict(result, "dimensions", name)
        values = [score.get("mean"), score.get("normalized"), *(dims.get(k) for k in keys)]
        for col, value in enumerate(values, start=1):
            columns[col].append(_number(value))
        mean_std = fmt(score.get("mean"))
        if _number(score.get("mean")) is not None and _number(score.get("std")) is not None:
            mean_std += f" ± {fmt(score.get('std'))}"
        label = f"{name} (trained)" if name == TRAINED else name
        rows.append([label, mean_std, *(fmt(v) for v in values[1:])])
    return Table(headers, rows, _bold_best(columns))


def _weights(result: dict) -> list[Block]:
    weights, definitions = _dict(result, "weights"), _dict(result, "definitions")
    if not weights and not definitions:
        return [Note("no dimension weights or definitions in the result")]
    rows = [
        [DIMENSION_TITLES.get(k, k), fmt(weights.get(k)), str(definitions.get(k, ""))]
        for k in _union([weights, definitions], DIMENSIONS)
    ]
    return [Table(["Dimension", "Weight", "How it is computed"], rows)]


def _plot(plots: dict[str, Path], name: str, caption: str, reason: str) -> Block:
    if name in plots:
        return Image(f"plots/{plots[name].name}", caption)
    return Note(reason)


def _sample_efficiency(result: dict, plots: dict[str, Path]) -> list[Block]:
    se = _get(result, "details", "sample_efficiency")
    if not isinstance(se, dict):
        return [Note(ABSENT)]
    if "unavailable" in se:
        return [Note(str(se["unavailable"]))]
    rows = [
        ["Normalized AUC", fmt(se.get("auc"))],
        ["Env steps to best baseline", fmt(se.get("steps_to_baseline"))],
        ["Env steps to 90% of final", fmt(se.get("steps_to_90pct_final"))],
        ["Final normalized score", fmt(se.get("final_normalized"))],
    ]
    return [
        Table(["Measure", "Value"], rows),
        _plot(plots, "learning_curve", "Learning curve", "no learning curve in the result"),
    ]


def _generalization(result: dict) -> list[Block]:
    details = _dict(result, "details", "generalization")
    names = [p for p in _policies(result) if isinstance(details.get(p), dict)]
    names += [p for p in details if p not in names and isinstance(details[p], dict)]
    if not names:
        return [Note(ABSENT)]
    unseen = _union(_get(details[p], "unseen") for p in names)
    rows = [
        [
            name,
            fmt(details[name].get("trained")),
            *(fmt(_get(details[name], "unseen", lv)) for lv in unseen),
            str(details[name].get("note") or ""),
        ]
        for name in names
    ]
    headers = ["Policy", "Trained levels", *(f"{lv} (unseen)" for lv in unseen), "Note"]
    return [Table(headers, rows)]


def _robustness(result: dict, plots: dict[str, Path]) -> list[Block]:
    details = _dict(result, "details", "robustness")
    names = [p for p in _policies(result) if isinstance(details.get(p), dict)]
    names += [p for p in details if p not in names and isinstance(details[p], dict)]
    if not names:
        return [Note(ABSENT)]
    tests = _union((details[p] for p in names), [t for t in ROBUSTNESS_TESTS])
    tests = [t for t in tests if any(t in details[p] for p in names)]
    rows = []
    for name in names:
        cells = []
        for test in tests:
            entry = _dict(details, name, test)
            cells.append(f"{fmt(entry.get('retained'))} ({fmt(entry.get('score'))})")
        rows.append([name, *cells])
    return [
        Paragraph("Each cell: share of the clean score retained (mean return under the test)."),
        Table(["Policy", *tests], rows),
        _plot(plots, "robustness", "Robustness", "no robustness tests in the result"),
    ]


def _coordination(result: dict) -> list[Block]:
    details = _dict(result, "details", "coordination")
    names = [p for p in _policies(result) if isinstance(details.get(p), dict)]
    names += [p for p in details if p not in names and isinstance(details[p], dict)]
    if not names:
        return [Note(ABSENT)]
    figures = _union((details[p] for p in names), ["score", "action_correlation"])
    rows = [[name, *(fmt(details[name].get(f)) for f in figures)] for name in names]
    return [Table(["Policy", *figures], rows)]


def _safety(result: dict) -> list[Block]:
    details = _dict(result, "details", "safety")
    if "unavailable" in details:
        return [Note(str(details["unavailable"]))]
    names = [p for p in _policies(result) if isinstance(details.get(p), dict) and details[p]]
    if not names:
        return [Note(ABSENT)]
    shielded = bool(_get(result, "settings", "shielded"))
    constraints = _union((details[p].get("violation_rate", {}) for p in names), ["any"])
    headers = ["Policy", *(f"violates {c}" for c in constraints)]
    if shielded:
        headers += ["interventions", "unresolved"]
    rows = []
    for name in names:
        rates = details[name].get("violation_rate", {})
        row = [name, *(fmt(rates.get(c)) for c in constraints)]
        if shielded:
            row += [
                fmt(details[name].get("intervention_rate")),
                fmt(details[name].get("unresolved")),
            ]
        rows.append(row)
    text = (
        "Share of agent-steps whose action, before any shield, broke each constraint "
        "(clean episodes at the main level)"
    )
    if shielded:
        text += (
            "; with the shield on, the share replaced by the fallback and how many stayed unsafe"
        )
    return [Paragraph(text + "."), Table(headers, rows)]


def _adaptability(result: dict) -> list[Block]:
    details = _dict(result, "details", "adaptability")
    rows = []
    for name in _union([details], [p for p in _policies(result) if p in details]):
        for switch, entry in _dict(details, name, "switches").items():
            entry = entry if isinstance(entry, dict) else {}
            rows.append(
                [
                    name,
                    switch,
                    fmt(entry.get("retained")),
                    fmt(entry.get("recovery_steps")),
                    fmt(entry.get("post_switch_return")),
                    fmt(entry.get("reference_return")),
                ]
            )
    if not rows:
        return [Note(ABSENT)]
    headers = [
        "Policy",
        "Switch",
        "Retained",
        "Recovery steps",
        "Return after switch",
        "Reference return",
    ]
    return [Table(headers, rows)]


def _levels(result: dict, plots: dict[str, Path]) -> list[Block]:
    levels = _dict(result, "levels")
    names = [lv for lv in levels if isinstance(levels[lv], dict)]
    if not names:
        return [Note(ABSENT)]
    policies = [p for p in _policies(result) if any(p in levels[lv] for lv in names)]
    policies += [p for p in _union(levels[lv] for lv in names) if p not in policies]
    trained, main = set(result.get("trained_levels") or []), result.get("level")
    rows = []
    for level in names:
        tags = [t for t, on in (("main", level == main), ("trained", level in trained)) if on]
        label = f"{level} ({', '.join(tags)})" if tags else level
        cells = []
        for name in policies:
            entry = _dict(levels, level, name)
            cell = fmt(entry.get("mean"))
            if _number(entry.get("std")) is not None:
                cell += f" ± {fmt(entry.get('std'))}"
            cells.append(f"{cell} [{fmt(entry.get('normalized'))}]")
        rows.append([label, *cells])
    return [
        Paragraph("Each cell: mean agent return ± std [normalized score]."),
        Table(["Level", *policies], rows),
        _plot(plots, "levels", "Score per level", "no per-level scores in the result"),
    ]


def _components(result: dict, plots: dict[str, Path]) -> list[Block]:
    components = _dict(result, "components")
    policies = [p for p in _policies(result) if isinstance(components.get(p), dict)]
    policies += [p for p in components if p not in policies and isinstance(components[p], dict)]
    names = _union(components[p] for p in policies)
    if not names:
        return [Note(ABSENT)]
    rows = [[c, *(fmt(components[p].get(c)) for p in policies)] for c in names]
    return [
        Paragraph("Per-agent mean episode sum of each unweighted reward component."),
        Table(["Component", *policies], rows),
        _plot(plots, "reward_components", "Reward components", "no reward components"),
    ]


def _settings(result: dict) -> list[Block]:
    rows = [
        ["Env config", json.dumps(_dict(result, "env", "config"), sort_keys=True, default=str)],
        ["Seed", fmt(result.get("seed"))],
        ["Episodes per policy", fmt(result.get("episodes"))],
        ["Main level", fmt(result.get("level"))],
        ["Trained levels", ", ".join(map(str, result.get("trained_levels") or [])) or "n/a"],
        ["Run dir", fmt(result.get("run_dir"))],
        ["Format version", fmt(result.get("format_version"))],
    ]
    rows += [[key, fmt(value)] for key, value in _dict(result, "settings").items()]
    rows += [[f"timing: {key}", fmt(value)] for key, value in _dict(result, "timing").items()]
    return [Table(["Setting", "Value"], rows)]


def build_report(result: dict, plots: dict[str, Path]) -> list[Block]:
    """The report as blocks, in order; `plots` maps plot names to the PNGs that exist.

    Order: title, headline table, weights and definitions, one section per dimension,
    behaviour (actions and trace), per-level scores, reward components, settings.
    """
    env_id = _get(result, "env", "id") or "unknown env"
    algorithm = result.get("algorithm") or "unknown algorithm"
    blocks: list[Block] = [
        Heading(f"Evaluation: {algorithm} on {env_id}", 1),
        Paragraph(f"Checkpoint: {result.get('checkpoint') or 'n/a'}"),
        Heading("Summary"),
        _headline(result),
        Paragraph("Bold: best in column. Normalized: 0 = random, 1 = best baseline."),
        Heading("Dimensions"),
        *_weights(result),
        _plot(plots, "dimensions", "Dimension scores", "no dimension scores in the result"),
        Heading("Sample efficiency"),
        *_sample_efficiency(result, plots),
        Heading("Generalization"),
        *_generalization(result),
        Heading("Robustness"),
        *_robustness(result, plots),
        Heading("Coordination"),
        *_coordination(result),
        Heading("Adaptability"),
        *_adaptability(result),
        *([Heading("Safety"), *_safety(result)] if "safety" in _dict(result, "details") else []),
        Heading("Behaviour"),
        _plot(plots, "actions", "Action distributions", "no action statistics in the result"),
        _plot(plots, "trace", "Episode trace", "no trace fields in the result"),
        Heading("Levels"),
        *_levels(result, plots),
        Heading("Reward components"),
        *_components(result, plots),
        Heading("Settings and timing"),
        *_settings(result),
    ]
    return blocks


# -- rendering ----------------------------------------------------------------------------


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell; "<" is escaped so no HTML tag gets through."""
    return str(text).replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines.append(f"{'#' * block.level} {_md(block.text)}")
        elif isinstance(block, Paragraph):
            lines.append(_md(block.text))
        elif isinstance(block, Note):
            lines.append(f"*not measured: {_md(block.reason)}*")
        elif isinstance(block, Image):
            lines.append(f"![{_md(block.caption)}]({block.src})")
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_md(h) for h in block.headers) + " |")
            lines.append("|" + "---|" * len(block.headers))
            for r, row in enumerate(block.rows):
                cells = [
                    f"**{_md(c)}**" if (r, i) in block.bold else _md(c) for i, c in enumerate(row)
                ]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; } figure { margin: 1em 0; }
figcaption { color: #666; font-size: .85em; }
.note { color: #8a5a00; font-style: italic; }
"""


def render_html(blocks: Sequence[Block]) -> str:
    """The blocks as one self-contained HTML page (inline CSS; images by relative path)."""
    e = html.escape
    title = next((b.text for b in blocks if isinstance(b, Heading) and b.level == 1), "Report")
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, Note):
            body.append(f'<p class="note">not measured: {e(block.reason)}</p>')
        elif isinstance(block, Image):
            body.append(
                f'<figure><img src="{e(block.src)}" alt="{e(block.caption)}">'
                f"<figcaption>{e(block.caption)}</figcaption></figure>"
            )
        elif isinstance(block, Table):
            head = "".join(f"<th>{e(h)}</th>" for h in block.headers)
            rows = []
            for r, row in enumerate(block.rows):
                cells = "".join(
                    f"<td><strong>{e(c)}</strong></td>"
                    if (r, i) in block.bold
                    else f"<td>{e(c)}</td>"
                    for i, c in enumerate(row)
                )
                rows.append(f"<tr>{cells}</tr>")
            body.append(
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_report(result: dict, out_dir: Path) -> dict[str, Path]:
    """Write report.md, report.html and the PNG plots under ``out_dir/plots/``.

    Args:
        result: the evaluation result of `rlp evaluate` (the content of evaluation.json);
            any section may be missing or None.
        out_dir: folder to write into; created if needed.

    Returns:
        ``{"markdown": path, "html": path, <plot name>: path, ...}`` for the files
        written; plots whose data is absent are left out (the report says why).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}
    for name, plot in PLOTS.items():
        path = plot(result, out_dir / "plots" / f"{name}.png")
        if path is not None:
            plots[name] = path
    blocks = build_report(result, plots)
    markdown = out_dir / "report.md"
    markdown.write_text(render_markdown(blocks), encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(render_html(blocks), encoding="utf-8")
    return {"markdown": markdown, "html": page, **plots}
