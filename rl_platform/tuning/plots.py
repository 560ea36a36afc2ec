"""A sweep's plots: optimization history, parameter importances, learning curves."""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rl_platform.stopping import ENV_STEPS_KEY
from rl_platform.tuning.metrics import finite
from rl_platform.tuning.plan import SweepPlan
from rl_platform.tuning.results import TrialRow

log = logging.getLogger(__name__)

TOP_TRIALS_PLOTTED = 5


def write_plots(study: Any, rows: list[TrialRow], plan: SweepPlan, plots_dir: Path) -> list[Path]:
    """Optimization history, parameter importances and learning curves as PNG (and HTML).

    Each plot is skipped, with a log line, when the study cannot make it yet (e.g. the
    importances need two completed trials whose values differ).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as optuna_mpl

    plots_dir.mkdir(exist_ok=True)
    written: list[Path] = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    makers: list[tuple[str, Callable[[], Any], Callable[[], Any] | None]] = []
    if complete:
        makers.append(
            (
                "optimization_history",
                lambda: optuna_mpl.plot_optimization_history(study),
                _plotly("plot_optimization_history", study),
            )
        )
    values = {t.value for t in complete}
    if len(complete) >= 2 and len(values) >= 2:
        makers.append(
            (
                "param_importances",
                lambda: optuna_mpl.plot_param_importances(study),
                _plotly("plot_param_importances", study),
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, make_png, make_html in makers:
            try:
                axes = make_png()
                figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
                figure.set_size_inches(8, 5)
                figure.tight_layout()
                path = plots_dir / f"{name}.png"
                figure.savefig(path, dpi=100)
                plt.close(figure)
                written.append(path)
                if make_html is not None:
                    html = plots_dir / f"{name}.html"
                    make_html().write_html(str(html))
                    written.append(html)
            except (ValueError, RuntimeError, ZeroDivisionError) as err:
                log.warning("could not plot %s: %s", name, err)
    curves = _learning_curves(rows, plan, plots_dir / "learning_curves.png")
    if curves is not None:
        written.append(curves)
    return written


def _plotly(function: str, study: Any) -> Callable[[], Any] | None:
    """Optuna's interactive figure maker, when plotly is installed (it is optional)."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        return None
    import optuna.visualization as vis

    return lambda: getattr(vis, function)(study)


def _learning_curves(rows: list[TrialRow], plan: SweepPlan, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    metric = plan.spec.metric
    curves = []
    for row in rows:
        progress = row.trial_dir / "progress.csv" if row.trial_dir else None
        if progress is None or not progress.is_file():
            continue
        xs, ys = [], []
        with progress.open() as handle:
            for record in csv.DictReader(handle):
                y = finite(record.get(metric))
                x = finite(record.get(ENV_STEPS_KEY)) or finite(record.get("training_iteration"))
                if x is not None and y is not None:
                    xs.append(x)
                    ys.append(y)
        if xs:
            curves.append((row, xs, ys))
    if not curves:
        return None
    sign = 1.0 if plan.spec.mode == "max" else -1.0
    ranked = sorted(
        (c for c in curves if c[0].value is not None),
        key=lambda c: (c[0].status == "complete", sign * c[0].value),
        reverse=True,
    )
    top = {id(c[0]) for c in ranked[:TOP_TRIALS_PLOTTED]}
    figure, axes = plt.subplots(figsize=(8, 5))
    for row, xs, ys in curves:
        if id(row) in top:
            continue
        axes.plot(xs, ys, color="0.75", linewidth=1)
    for row, xs, ys in ranked[:TOP_TRIALS_PLOTTED]:
        label = f"{row.trial_id} ({row.status}, {row.value:.3g})"
        axes.plot(xs, ys, marker="o", markersize=3, label=label)
    axes.set_xlabel("env steps")
    axes.set_ylabel(metric)
    shown = min(len(ranked), TOP_TRIALS_PLOTTED)
    axes.set_title(f"learning curves: the top {shown} trials (grey: the others)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
