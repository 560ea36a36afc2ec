"""The run dashboard: PNG panels and a self-contained ``index.html`` (:func:`render_dashboard`)."""

from __future__ import annotations

import base64
import html
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_platform.config.monitoring import MonitoringSpec
from rl_platform.monitoring.detector import Anomaly, AnomalyDetector
from rl_platform.monitoring.io import ANOMALIES_FILE, RESULT_FILE, read_anomalies, read_results
from rl_platform.monitoring.results import (
    EXPLORATION_STATS,
    LOSS_STATS,
    VALUE_STATS,
    monitor_row,
)
from rl_platform.runs import SUMMARY_FILE

MONITOR_DIR = "monitor"


@dataclass
class _Series:
    """Columns of :func:`monitor_row` over iterations (x: iteration of each value)."""

    columns: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

    def add(self, row: Mapping[str, float]) -> None:
        x = row.get("iteration", float(len(self.columns.get("iteration", ([], []))[0]) + 1))
        for key, value in row.items():
            xs, ys = self.columns.setdefault(key, ([], []))
            xs.append(x)
            ys.append(value)

    def matching(self, stats: Iterable[str]) -> dict[str, tuple[list[float], list[float]]]:
        """Columns ``<stat>/<module>`` and ``<stat>`` itself for each of ``stats``."""
        names = tuple(stats)
        return {
            k: v
            for k, v in self.columns.items()
            if k in names or k.startswith(tuple(f"{s}/" for s in names))
        }

    def named(self, names: Iterable[str]) -> dict[str, tuple[list[float], list[float]]]:
        return {k: self.columns[k] for k in names if k in self.columns}

    def prefixed(self, prefix: str) -> dict[str, tuple[list[float], list[float]]]:
        return {k: v for k, v in self.columns.items() if k.startswith(prefix)}


def _rolling_mean(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = [v for v in values[max(0, i - window + 1) : i + 1] if math.isfinite(v)]
        out.append(statistics.fmean(chunk) if chunk else math.nan)
    return out


_KIND_COLORS = {
    "reward_collapse": "tab:red",
    "instability": "tab:orange",
    "nan": "black",
    "entropy_collapse": "tab:purple",
    "stalled_throughput": "tab:brown",
}


def _panels(
    path: Path, title: str, panels: list[tuple[str, dict[str, tuple[list[float], list[float]]]]]
) -> Path | None:
    """One PNG with a panel per (title, lines); nothing when every panel is empty."""
    from matplotlib.figure import Figure

    panels = [(t, lines) for t, lines in panels if lines]
    if not panels:
        return None
    fig = Figure(figsize=(8, 2.6 * len(panels) + 0.6), layout="constrained")
    fig.suptitle(title)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (panel_title, lines) in zip(axes, panels):
        for name, (xs, ys) in sorted(lines.items()):
            ax.plot(xs, ys, label=name, linewidth=1.2)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("training iteration")
    fig.savefig(path, dpi=90)
    return path


def _returns_plot(path: Path, series: _Series, anomalies: list[Anomaly], window: int) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    xs, ys = series.columns.get("episode_return_mean", ([], []))
    if "episode_return_min" in series.columns and "episode_return_max" in series.columns:
        lo_x, lo = series.columns["episode_return_min"]
        _, hi = series.columns["episode_return_max"]
        ax.fill_between(lo_x, lo, hi, alpha=0.15, label="episode return min-max")
    ax.plot(xs, ys, linewidth=1.0, label="episode return mean")
    if ys:
        ax.plot(xs, _rolling_mean(ys, window), linewidth=2.0, label=f"rolling mean ({window})")
    for kind in sorted({a.kind for a in anomalies}):
        marks = [a.iteration for a in anomalies if a.kind == kind]
        for i, x in enumerate(marks):
            label = kind if i == 0 else None
            ax.axvline(x, color=_KIND_COLORS.get(kind, "gray"), linestyle="--", label=label)
    ax.set_xlabel("training iteration")
    ax.set_ylabel("return")
    ax.set_title("Episode return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.savefig(path, dpi=90)
    return path


def render_dashboard(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    spec: MonitoringSpec | None = None,
) -> dict[str, Path]:
    """Write the monitor plots and ``index.html`` of a run (live or finished).

    Reads ``trial/result.json`` and ``anomalies.jsonl``; a run without the log (older runs)
    gets its anomalies by replaying :class:`AnomalyDetector` with ``spec`` over the results.

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
    results = read_results(run_dir)
    replayed = not (run_dir / ANOMALIES_FILE).exists()
    if replayed:
        detector = AnomalyDetector(spec)
        anomalies = [a for r in results for a in detector.observe(r)]
    else:
        anomalies = read_anomalies(run_dir)
    series = _Series()
    for result in results:
        series.add(monitor_row(result))

    written: dict[str, Path | None] = {
        "returns": _returns_plot(out / "returns.png", series, anomalies, spec.window),
        "losses": _panels(
            out / "losses.png",
            "Losses per module",
            [(title, series.matching(stats)) for title, stats in LOSS_STATS.items()],
        ),
        "values": _panels(
            out / "values.png",
            "Value estimates per module",
            [(s, series.matching([s])) for s in VALUE_STATS],
        ),
        "exploration": _panels(
            out / "exploration.png",
            "Exploration",
            [(s, series.matching([s])) for s in EXPLORATION_STATS],
        ),
        "throughput": _panels(
            out / "throughput.png",
            "Throughput",
            [("env steps / s", series.named(["env_steps_per_s"]))],
        ),
        "rewards": _panels(
            out / "rewards.png",
            "Reward components (mean per episode)",
            [
                ("components", series.prefixed("reward/")),
                ("return per agent", series.prefixed("return/")),
                ("return per module", series.prefixed("module_return/")),
            ],
        ),
        "curriculum": _panels(
            out / "curriculum.png",
            "Curriculum",
            [
                ("level", series.matching(["curriculum/level"])),
                ("window score", series.matching(["curriculum/score"])),
            ],
        ),
        "actions": _panels(
            out / "actions.png",
            "Actions per module (frequencies, or mean / std per dimension)",
            [("actions", series.prefixed("actions/"))],
        ),
        "evaluation": _panels(
            out / "evaluation.png", "Evaluation", [("evaluation", series.prefixed("evaluation/"))]
        ),
    }
    plots = {name: path for name, path in written.items() if path is not None}
    plots["index"] = _write_index(out / "index.html", run_dir, plots, anomalies, results, replayed)
    return plots


def _write_index(
    path: Path,
    run_dir: Path,
    plots: Mapping[str, Path],
    anomalies: list[Anomaly],
    results: list[dict[str, Any]],
    replayed: bool,
) -> Path:
    esc = html.escape
    last = results[-1] if results else {}
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
<p>Status: {esc(status)}; iterations: {len(results)}; last iteration:
{esc(str(last.get("training_iteration", "-")))}.</p>
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
    """Re-render the dashboard whenever ``trial/result.json`` grows, until the run ends.

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
    result_file = run_dir / RESULT_FILE
    started = time.monotonic()
    seen = -1
    plots: dict[str, Path] = {}
    while True:
        finished = (run_dir / SUMMARY_FILE).exists()
        size = result_file.stat().st_size if result_file.exists() else -1
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
