"""The run dashboard: PNG panels and a self-contained ``index.html`` (:func:`render_dashboard`)."""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported when a dashboard is drawn, not with the package
    import pandas as pd

from rl_platform.config.monitoring import MonitoringSpec
from rl_platform.monitoring.detector import Anomaly, AnomalyDetector
from rl_platform.monitoring.io import (
    ANOMALIES_FILE,
    LEGACY_MONITOR_CSV,
    RESULT_FILE,
    read_anomalies,
    read_results,
    read_table,
    result_file,
)
from rl_platform.monitoring.results import EXPLORATION_STATS, LOSS_STATS, VALUE_STATS
from rl_platform.runs import METRICS_FILE, SUMMARY_FILE

MONITOR_DIR = "monitor"


Lines = dict[str, "pd.Series"]  # name -> values indexed by training iteration


def _lines(frame: pd.DataFrame, names: Iterable[str]) -> Lines:
    """The columns ``names`` that hold a value, each without its missing iterations."""
    out = {}
    for name in names:
        if name not in frame.columns:
            continue
        values = frame[name].dropna()
        if len(values):
            out[name] = values
    return out


def _matching(frame: pd.DataFrame, stats: Iterable[str]) -> Lines:
    """Columns ``<stat>/<module>`` and ``<stat>`` itself for each of ``stats``."""
    names = tuple(stats)
    prefixes = tuple(f"{s}/" for s in names)
    return _lines(frame, [c for c in frame.columns if c in names or c.startswith(prefixes)])


def _prefixed(frame: pd.DataFrame, prefix: str) -> Lines:
    return _lines(frame, [c for c in frame.columns if c.startswith(prefix)])


def env_action_names(run_dir: str | Path) -> list[str] | None:
    """The action names the run's env declares (``action_names``), if any.

    Read from ``RUN_DIR/config.yaml``'s env (:func:`rl_platform.envs.common.action_names`).
    None when the run, its env or the names are missing.
    """
    import yaml

    from rl_platform.envs.common import action_names
    from rl_platform.runs import CONFIG_FILE

    try:
        config = yaml.safe_load((Path(run_dir) / CONFIG_FILE).read_text()) or {}
        env = config["env"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return action_names(str(env.get("id")), env.get("config") or {})


def _action_label(column: str, names: list[str] | None) -> str:
    """``actions/<module>/p_<k>`` as ``<module>: P(<name k>)`` (``mean_<d>``, ``std_<d>`` too).

    Names come from the env (:func:`env_action_names`); ``a<k>`` where it gives none.
    """
    parts = column.split("/", 2)
    if len(parts) < 3:
        return column
    _, module, stat = parts
    kind, _, index = stat.rpartition("_")
    if kind not in ("p", "mean", "std") or not index.isdigit():
        return f"{module}: {stat}"
    k = int(index)
    name = names[k] if names is not None and k < len(names) else f"a{k}"
    return f"{module}: P({name})" if kind == "p" else f"{module}: {kind} {name}"


_Y_LABELS = {
    "components": "reward per episode",
    "return per agent": "episode return",
    "return per module": "episode return",
    "actions": "share / value",
    "evaluation": "value",
    "window score": "score",
}

_KIND_COLORS = {
    "reward_collapse": "tab:red",
    "instability": "tab:orange",
    "nan": "black",
    "entropy_collapse": "tab:purple",
    "stalled_throughput": "tab:brown",
}


def _save(fig: Any, path: Path) -> Path:
    """Save ``fig`` with integer iteration ticks on every x axis (iterations are whole)."""
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.savefig(path, dpi=90)
    return path


def _panels(path: Path, title: str, panels: list[tuple[str, Lines]]) -> Path | None:
    """One PNG with a panel per (title, lines); nothing when every panel is empty.

    A panel's y label is its title (``policy loss``, ``KL``, ...) unless
    :data:`_Y_LABELS` names its unit.
    """
    from matplotlib.figure import Figure

    panels = [(t, lines) for t, lines in panels if lines]
    if not panels:
        return None
    fig = Figure(figsize=(8, 2.6 * len(panels) + 0.6), layout="constrained")
    fig.suptitle(title)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (panel_title, lines) in zip(axes, panels):
        for name, values in sorted(lines.items()):
            ax.plot(values.index, values.to_numpy(), label=name, linewidth=1.2)
        ax.set_title(panel_title, fontsize=10)
        ax.set_ylabel(_Y_LABELS.get(panel_title, panel_title), fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("training iteration")
    return _save(fig, path)


def _returns_plot(path: Path, frame: pd.DataFrame, anomalies: list[Anomaly], window: int) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    spread = ["episode_return_min", "episode_return_max"]
    if set(spread) <= set(frame.columns):
        band = frame[spread].dropna()
        ax.fill_between(
            band.index, band[spread[0]], band[spread[1]], alpha=0.15, label="episode return min-max"
        )
    mean = _lines(frame, ["episode_return_mean"]).get("episode_return_mean")
    if mean is not None:
        ax.plot(mean.index, mean.to_numpy(), linewidth=1.0, label="episode return mean")
        finite = frame["episode_return_mean"].replace([math.inf, -math.inf], math.nan)
        rolling = finite.rolling(window, min_periods=1).mean()  # NaN in a window is skipped
        ax.plot(rolling.index, rolling.to_numpy(), linewidth=2.0, label=f"rolling mean ({window})")
    for kind in sorted({a.kind for a in anomalies}):
        marks = [a.iteration for a in anomalies if a.kind == kind]
        for i, x in enumerate(marks):
            label = kind if i == 0 else None
            ax.axvline(x, color=_KIND_COLORS.get(kind, "gray"), linestyle="--", label=label)
    ax.set_xlabel("training iteration")
    ax.set_ylabel("return")
    ax.set_title("Episode return")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def render_dashboard(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    spec: MonitoringSpec | None = None,
) -> dict[str, Path]:
    """Write the monitor plots and ``index.html`` of a run (live or finished).

    Plots the run's table (:func:`~rl_platform.monitoring.io.read_table`: ``metrics.csv``,
    and an older run's ``monitor.csv``) and marks ``anomalies.jsonl``'s anomalies; a run
    without the log (older runs, monitoring off) gets its anomalies by replaying
    :class:`AnomalyDetector` with ``spec`` over Tune's ``trial/result.json``.

    Args:
        run_dir: The run directory of ``rlp train``.
        out_dir: Where to write; default ``RUN_DIR/monitor``.
        spec: Rules for the replay and the rolling-mean window; default ``MonitoringSpec()``.

    Returns:
        Name (``returns``, ``losses``, ``values``, ``exploration``, ``throughput``,
        ``rewards``, ``curriculum``, ``evaluation``, ``index``) -> written file, for the
        plots that had data.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / MONITOR_DIR
    out.mkdir(parents=True, exist_ok=True)
    spec = spec or MonitoringSpec()
    replayed = not (run_dir / ANOMALIES_FILE).exists()
    if replayed:
        detector = AnomalyDetector(spec)
        anomalies = [a for r in read_results(run_dir) for a in detector.observe(r)]
    else:
        anomalies = read_anomalies(run_dir)
    frame = read_table(run_dir)
    actions = _prefixed(frame, "actions/")
    names = env_action_names(run_dir) if actions else None

    written: dict[str, Path | None] = {
        "returns": _returns_plot(out / "returns.png", frame, anomalies, spec.window),
        "losses": _panels(
            out / "losses.png",
            "Losses per module",
            [(title, _matching(frame, stats)) for title, stats in LOSS_STATS.items()],
        ),
        "values": _panels(
            out / "values.png",
            "Value estimates per module",
            [(s, _matching(frame, [s])) for s in VALUE_STATS],
        ),
        "exploration": _panels(
            out / "exploration.png",
            "Exploration",
            [(s, _matching(frame, [s])) for s in EXPLORATION_STATS],
        ),
        "throughput": _panels(
            out / "throughput.png",
            "Throughput",
            [("env steps / s", _lines(frame, ["env_steps_per_s"]))],
        ),
        "rewards": _panels(
            out / "rewards.png",
            "Reward components (mean per episode)",
            [
                ("components", _prefixed(frame, "reward/")),
                ("return per agent", _prefixed(frame, "return/")),
                ("return per module", _prefixed(frame, "module_return/")),
            ],
        ),
        "curriculum": _panels(
            out / "curriculum.png",
            "Curriculum",
            [
                ("level", _matching(frame, ["curriculum/level"])),
                ("window score", _matching(frame, ["curriculum/score"])),
            ],
        ),
        "actions": _panels(
            out / "actions.png",
            "Actions per module (frequencies, or mean / std per dimension)",
            [("actions", {_action_label(c, names): v for c, v in actions.items()})],
        ),
        "evaluation": _panels(
            out / "evaluation.png", "Evaluation", [("evaluation", _prefixed(frame, "evaluation/"))]
        ),
    }
    plots = {name: path for name, path in written.items() if path is not None}
    plots["index"] = _write_index(out / "index.html", run_dir, plots, anomalies, frame, replayed)
    return plots


def _write_index(
    path: Path,
    run_dir: Path,
    plots: Mapping[str, Path],
    anomalies: list[Anomaly],
    frame: pd.DataFrame,
    replayed: bool,
) -> Path:
    esc = html.escape
    last = f"{frame.index[-1]:g}" if len(frame) else "-"
    status = "finished" if (run_dir / SUMMARY_FILE).exists() else "running (or stopped early)"
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{esc(str(v))}</td>"
            for v in (a.iteration, a.kind, a.module or "", f"{a.value:.4g}", f"{a.threshold:.4g}")
        )
        + f"<td>{esc(a.message)}</td></tr>"
        for a in anomalies
    )
    source = "replayed from result.json with default rules" if replayed else ANOMALIES_FILE
    tables = [n for n in (LEGACY_MONITOR_CSV, METRICS_FILE) if (run_dir / n).is_file()]
    source_table = " and ".join(tables) or RESULT_FILE
    table = (
        "<table><tr><th>iteration</th><th>kind</th><th>module</th><th>value</th>"
        f"<th>threshold</th><th>message</th></tr>\n{rows}</table>"
        if anomalies
        else "<p>No anomalies.</p>"
    )
    images = "\n".join(
        f'<h2>{esc(name)}</h2><img alt="{esc(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}">'
        for name, p in plots.items()
    )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{esc(run_dir.name)} monitor</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}img{{max-width:100%}}</style>
</head><body>
<h1>Run {esc(str(run_dir))}</h1>
<p>Status: {esc(status)}; iterations: {len(frame)}; last iteration: {esc(last)};
figures from {esc(source_table)}.</p>
<h2>Anomalies ({len(anomalies)}, from {esc(source)})</h2>
{table}
{images}
</body></html>
"""
    path.write_text(page)
    return path


def follow(
    run_dir: str | Path,
    interval_s: float = 10.0,
    stop_when_finished: bool = True,
    on_update: Callable[[dict[str, Path]], None] | None = None,
    timeout_s: float | None = None,
) -> dict[str, Path]:
    """Re-render the dashboard whenever the run's table grows, until the run ends.

    Args:
        run_dir: The run directory.
        interval_s: Seconds between checks.
        stop_when_finished: Return once the run summary (``SUMMARY_FILE``) exists (after a
            last render).
        on_update: Called with the written files after each render.
        timeout_s: Return after this many seconds (None: no limit).

    Returns:
        The files of the last render (empty if nothing was rendered).
    """
    run_dir = Path(run_dir)
    started = time.monotonic()
    seen = -1
    plots: dict[str, Path] = {}
    while True:
        finished = (run_dir / SUMMARY_FILE).exists()
        metrics = run_dir / METRICS_FILE
        watched = metrics if metrics.exists() else result_file(run_dir)
        size = watched.stat().st_size if watched.exists() else -1
        if size != seen or (finished and not plots):
            seen = size
            plots = render_dashboard(run_dir)
            if on_update is not None:
                on_update(plots)
        if finished and stop_when_finished:
            return plots
        if timeout_s is not None and time.monotonic() - started >= timeout_s:
            return plots
        time.sleep(interval_s)
