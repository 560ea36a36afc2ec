"""``rlp compare``'s outputs: compare.json, compare.png, compare.md and the printed table.

Everything here reads the JSON-ready result of :func:`~rl_platform.evaluation.compare.compare`,
so the files always agree. The figure is drawn on a :class:`matplotlib.figure.Figure` without
pyplot (no GUI backend, nothing global left open).
"""

from __future__ import annotations

import io
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from rl_platform import runs
from rl_platform.evaluation.compare import GREEDY, CompareError

FILES = {"json": "compare.json", "png": "compare.png", "md": "compare.md"}
DPI = 110


def default_output(now: datetime | None = None) -> Path:
    """``compare-<stamp>`` under the current directory (the first free one)."""
    stamp = (now or datetime.now()).strftime(runs.STAMP_FORMAT)
    path, suffix = Path(f"compare-{stamp}"), 1
    while path.exists():
        suffix += 1
        path = Path(f"compare-{stamp}-{suffix}")
    return path


def write_comparison(result: dict[str, Any], output: str | Path) -> dict[str, Path]:
    """Write compare.json, compare.png and compare.md into ``output`` (made if missing).

    Everything is rendered before the first file is written, and each file is written
    whole (a temporary file renamed into place).
    """
    contents = {
        "json": (json.dumps(result, indent=2) + "\n").encode(),
        "png": render_png(result),
        "md": render_markdown(result).encode(),
    }
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise CompareError(f"--output {out}: exists and is not a directory.")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, data in contents.items():
        path = out / FILES[key]
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
        written[key] = path
    return written


def fmt_estimate(estimate: dict[str, float], digits: int = 3) -> str:
    """``point [low, high]``."""
    p, lo, hi = (f"{estimate[k]:.{digits}f}" for k in ("point", "low", "high"))
    return f"{p} [{lo}, {hi}]"


def summary_rows(result: dict[str, Any]) -> list[list[str]]:
    """The table's rows: entry, env, runs, IQM, mean, normalized IQM (all envs last)."""
    rows = []
    several = len(result["envs"]) > 1
    for label, entry in result["entries"].items():
        for env, figures in entry["envs"].items():
            rows.append(
                [
                    label,
                    env,
                    str(figures["runs"]),
                    fmt_estimate(figures["iqm"]),
                    fmt_estimate(figures["mean"]),
                    fmt_estimate(figures["normalized_iqm"]),
                ]
            )
        if several:
            overall = entry["all"]
            rows.append(
                [
                    label,
                    "all envs",
                    f"{overall['runs_per_env']} per env",
                    "",
                    "",
                    fmt_estimate(overall["iqm"]),
                ]
            )
    return rows


HEADERS = ["entry", "env", "runs", "IQM [95% CI]", "mean [95% CI]", "normalized IQM [95% CI]"]


def render_markdown(result: dict[str, Any]) -> str:
    """compare.md: what the scores are, the table, probabilities of improvement, notes."""
    lines = ["# rlp compare", "", _scale_sentence(result), ""]
    lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(result)]
    lines += ["", "| probability of improvement | P [95% CI] |", "|---|---|"]
    for pair in result["probability_of_improvement"]:
        lines.append(f"| P({pair['x']} > {pair['y']}) | {fmt_estimate(pair, 2)} |")
    if result["notes"]:
        lines += ["", *(f"- {n}" for n in result["notes"])]
    inputs = ", ".join(f"`{p}`" for p in result["inputs"])
    lines += ["", f"Inputs: {inputs}. Figures: compare.json; plots: compare.png.", ""]
    return "\n".join(lines)


def _scale_sentence(result: dict[str, Any]) -> str:
    what = (
        "greedy return per agent of each final policy"
        if result["score"] == GREEDY
        else result["score"]
    )
    references = "; ".join(
        f"{env}: random {_num(r['random'])}, best baseline "
        + (
            f"{r['best_baseline']} {_num(r['baselines'][r['best_baseline']])}"
            if r["best_baseline"]
            else "none"
        )
        for env, r in result["envs"].items()
    )
    return (
        f"Score: {what}. Normalized per env: 0 = random play, 1 = the best baseline "
        f"({references}). "
        f"IQM and mean with {result['confidence']:.0%} stratified bootstrap CIs "
        f"({result['reps']} replications); probability of improvement over all envs compared."
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def render_png(result: dict[str, Any]) -> bytes:
    """compare.png: IQM, mean, probability of improvement and performance profile panels."""
    import matplotlib
    from matplotlib.figure import Figure

    labels = list(result["entries"])
    colors = {n: matplotlib.colormaps["tab10"](i % 10) for i, n in enumerate(labels)}
    pairs = result["probability_of_improvement"]
    height = max(3.2, 0.45 * max(len(labels), len(pairs)) + 1.8)
    fig = Figure(figsize=(17, height), layout="constrained")
    fig.suptitle(
        f"{result['score']} on {', '.join(result['envs'])}: {result['confidence']:.0%} "
        f"stratified bootstrap CIs ({result['reps']} replications)"
    )
    iqm_ax, mean_ax, poi_ax, profile_ax = fig.subplots(1, 4)
    axis = "normalized score (0 random, 1 best baseline)" if result["scale"] != "raw" else "score"
    for ax, key, title in ((iqm_ax, "iqm", "IQM"), (mean_ax, "mean", "mean")):
        for y, label in enumerate(labels):
            e = result["entries"][label]["all"][key]
            ax.plot(
                [e["low"], e["high"]],
                [y, y],
                color=colors[label],
                linewidth=8,
                alpha=0.5,
                solid_capstyle="butt",
            )
            ax.plot([e["point"]], [y], marker="o", markersize=6, color=colors[label])
            ax.plot([e["point"]], [y], marker="|", markersize=16, color="black")
        ax.set_yticks(range(len(labels)), labels if key == "iqm" else [""] * len(labels))
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.invert_yaxis()
        ax.set_xlabel(axis)
        ax.set_title(f"{title} with {result['confidence']:.0%} CI")
        ax.grid(axis="x", alpha=0.3)
    for y, pair in enumerate(pairs):
        poi_ax.plot(
            [pair["low"], pair["high"]],
            [y, y],
            color=colors[pair["x"]],
            linewidth=8,
            alpha=0.5,
            solid_capstyle="butt",
        )
        poi_ax.plot([pair["point"]], [y], marker="o", markersize=6, color=colors[pair["x"]])
        poi_ax.plot([pair["point"]], [y], marker="|", markersize=16, color="black")
    poi_ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    poi_ax.set_yticks(range(len(pairs)), [f"P({p['x']} > {p['y']})" for p in pairs])
    poi_ax.yaxis.tick_right()
    poi_ax.set_ylim(-0.7, len(pairs) - 0.3)
    poi_ax.invert_yaxis()
    poi_ax.set_xlim(-0.02, 1.02)
    poi_ax.set_xlabel("probability of improvement")
    poi_ax.set_title("P(X > Y) with 95% CI")
    poi_ax.grid(axis="x", alpha=0.3)
    profile = result["performance_profile"]
    for label in labels:
        p = profile["entries"][label]
        profile_ax.plot(profile["tau"], p["fraction"], color=colors[label], label=label)
        profile_ax.fill_between(profile["tau"], p["low"], p["high"], color=colors[label], alpha=0.2)
    profile_ax.set_ylim(-0.02, 1.02)
    profile_ax.set_xlabel(f"{axis} tau")
    profile_ax.set_ylabel("fraction of runs with score > tau")
    profile_ax.set_title("performance profile")
    profile_ax.grid(alpha=0.3)
    # below the axes, so the legend never covers a curve
    profile_ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=min(3, len(labels)), frameon=False
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
