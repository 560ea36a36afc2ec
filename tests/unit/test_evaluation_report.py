"""The evaluation report: files, valid PNGs, tables for every policy, escaping, gaps."""

import base64
import copy
import math
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from rl_platform.evaluation import plots
from rl_platform.evaluation.plots import plot_learning_curve
from rl_platform.evaluation.report import write_report
from rl_platform.evaluation.result_data import DIMENSIONS, fmt

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIMENSION_HEADERS = [
    "Generalization",
    "Robustness",
    "Coordination",
    "Adaptability",
    "Overall",
]


def make_result(kind: str = "continuous") -> dict:
    """A result shaped like `rlp evaluate`'s: continuous resource_allocation or discrete game."""
    rng = np.random.default_rng(0)
    if kind == "continuous":
        env_id, baselines, n_agents = "resource_allocation", ["proportional", "greedy"], 3
        components = ["satisfaction", "fairness", "waste"]
    else:
        env_id, baselines, n_agents = "two_step_game", ["safe", "optimal"], 2
        components = ["payoff"]
    policies = ["policy", *baselines, "random"]
    levels = ["easy", "medium", "hard"]
    iterations = 12
    steps = [4000 * (i + 1) for i in range(iterations)]
    normalized = list(np.clip(np.linspace(-0.1, 1.1, iterations), -1, None))
    if kind == "continuous":
        actions = {
            p: {
                "kind": "continuous",
                "dims": ["cpu", "memory", "network"],
                "bins": list(np.linspace(0, 1, 11)),
                "counts": rng.integers(0, 50, size=(n_agents, 3, 10)).tolist(),
            }
            for p in policies
        }
        fields = {
            "demand": rng.random((25, n_agents)).tolist(),  # per agent
            "scarcity": rng.random(25).tolist(),  # scalar
        }
    else:
        actions = {
            p: {
                "kind": "discrete",
                "labels": ["A", "B"],
                "counts": rng.integers(0, 30, size=(n_agents, 2)).tolist(),
            }
            for p in policies
        }
        fields = {"state": [0, 1], "joint_action": [[0, 1], [1, 1]]}
    trace_steps = len(next(iter(fields.values())))
    return {
        "format_version": 1,
        "checkpoint": "runs/demo/checkpoints/final",
        "run_dir": "runs/demo",
        "env": {"id": env_id, "config": {"num_agents": n_agents}},
        "algorithm": "mappo",
        "seed": 7,
        "episodes": 20,
        "level": "medium",
        "trained_levels": ["easy", "medium"],
        "weights": {
            "generalization": 2 / 7,
            "robustness": 2 / 7,
            "coordination": 2 / 7,
            "adaptability": 1 / 7,
        },
        "policies": policies,
        "scores": {
            p: {"mean": 10.0 - i, "std": 1.5, "ci95": [9.0 - i, 11.0 - i], "normalized": 1.2 - i}
            for i, p in enumerate(policies)
        },
        "levels": {
            lv: {
                p: {"mean": 8.0 - i - j, "std": 0.5, "normalized": 1.0 - 0.3 * i}
                for i, p in enumerate(policies)
            }
            for j, lv in enumerate(levels)
        },
        "dimensions": {
            p: {
                **{d: 0.9 - 0.2 * i + 0.01 * k for k, d in enumerate(DIMENSIONS)},
                "overall": 0.7 - 0.2 * i,
            }
            for i, p in enumerate(policies)
        },
        "details": {
            "sample_efficiency": {
                "measure": "auc",
                "auc": 0.61,
                "steps_to_baseline": 36000,
                "steps_to_90pct_final": 40000,
                "final_normalized": 1.0,
                "curve": {
                    "checkpoint": [f"checkpoint_{i:06d}" for i in range(iterations)],
                    "iteration": list(range(1, iterations + 1)),
                    "env_steps": steps,
                    "score": [2.0 + 0.7 * i for i in range(iterations)],
                    "low": [1.5 + 0.7 * i for i in range(iterations)],
                    "high": [2.5 + 0.7 * i for i in range(iterations)],
                    "normalized": normalized,
                },
            },
            "generalization": {
                p: {"trained": 0.9 - 0.1 * i, "unseen": {"hard": 0.5 - 0.1 * i}, "note": "ok"}
                for i, p in enumerate(policies)
            },
            "robustness": {
                p: {
                    t: {"score": 7.0 - i, "retained": 0.9 - 0.1 * i}
                    for t in ("obs_noise", "action_noise", "random_agent", "faulty_agent")
                }
                for i, p in enumerate(policies)
            },
            "coordination": {
                p: {"score": 0.6, "action_correlation": 0.3 - 0.1 * i, "gini": 0.2}
                for i, p in enumerate(policies)
            }
            | {"policy": {"score": 0.8, "action_correlation": 0.4, "collisions": 1.5}},
            "adaptability": {
                p: {
                    "switches": {
                        "easy->hard": {
                            "retained": 0.7,
                            "recovery_steps": None if p == "random" else 120,
                            "post_switch_return": 4.0,
                            "reference_return": 6.0,
                        }
                    }
                }
                for p in policies
            },
        },
        "components": {
            p: {c: 1.0 - 0.3 * i + k for k, c in enumerate(components)}
            for i, p in enumerate(policies)
        },
        "actions": actions,
        "trace": {
            p: {"steps": trace_steps, "fields": fields, "rewards": rng.random(trace_steps).tolist()}
            for p in policies[:2]
        },
        "settings": {
            "obs_noise": 0.1,
            "action_noise": 0.1,
            "switch_step": 50,
            "held_out_seed": 1000,
        },
        "definitions": {
            d: f"How {d} is computed, in one paragraph." for d in ("sample_efficiency", *DIMENSIONS)
        },
        "timing": {"wall_s": 12.3},
    }


ALL_PLOTS = {
    "learning_curve",
    "dimensions",
    "reward_components",
    "actions",
    "trace",
    "levels",
    "robustness",
}


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000, path


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_full_result_writes_report_and_all_plots(tmp_path, kind):
    result = make_result(kind)
    paths = write_report(result, tmp_path)
    assert set(paths) == {"markdown", "html"} | ALL_PLOTS
    for name in ALL_PLOTS:
        assert paths[name] == tmp_path / "plots" / f"{name}.png"
        assert_png(paths[name])
    markdown = paths["markdown"].read_text()
    page = paths["html"].read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| Policy | Score"))
    assert all(name in header for name in DIMENSION_HEADERS)
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert rows.index(next(r for r in rows if r.startswith("| policy (trained) |"))) == 1
    for policy in result["policies"]:
        assert any(r.startswith(f"| {policy}") for r in rows), policy
    assert "| **10 [9, 11]** |" in markdown  # the best score is bold, with its interval
    assert "| checkpoint_000011 | 12 | 48000 | 9.7 [9.2, 10.2] |" in markdown  # greedy curve
    assert "Sample efficiency (not in overall)" in markdown
    assert "| Sample efficiency | apart |" in markdown
    for name in ALL_PLOTS:
        assert f"](plots/{name}.png)" in markdown
    assert "not measured" not in markdown
    assert "collisions" in markdown and "gini" in markdown  # env-specific coordination
    assert "easy-&gt;hard" in page and "36000" in markdown
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert page.count('<img src="data:image/png;base64,') == len(ALL_PLOTS)


def test_html_and_markdown_escape_strings(tmp_path):
    result = make_result()
    evil = "<script>alert(1)</script>"
    result["env"]["config"]["label"] = evil
    result["policies"].append(evil)
    result["scores"][evil] = {"mean": 1.0, "std": 0.1, "normalized": 0.0}
    paths = write_report(result, tmp_path)
    page = paths["html"].read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in paths["markdown"].read_text()


def test_missing_sections_say_not_measured(tmp_path):
    result = make_result()
    result["details"]["sample_efficiency"] = {"unavailable": "bare checkpoint: no run directory"}
    del result["trace"]
    result["components"] = None
    result["details"]["adaptability"] = None
    result["dimensions"]["policy"]["robustness"] = None
    result["dimensions"]["greedy"]["overall"] = float("nan")
    paths = write_report(result, tmp_path)
    assert "learning_curve" not in paths and "trace" not in paths
    assert "reward_components" not in paths
    for name in ("dimensions", "actions", "levels", "robustness"):
        assert_png(paths[name])
    markdown = paths["markdown"].read_text()
    assert "*n/a: bare checkpoint: no run directory*" in markdown
    assert "not measured: no trace fields in the result" in markdown
    assert markdown.count("not measured") == 3
    policy_row = next(r for r in markdown.splitlines() if r.startswith("| policy (trained) |"))
    greedy_row = next(r for r in markdown.splitlines() if r.startswith("| greedy |"))
    assert policy_row.split(" | ")[5] == "n/a"  # robustness column
    assert greedy_row.rstrip(" |").endswith("n/a")  # overall column
    assert "not measured" in paths["html"].read_text()


def test_nearly_empty_result_still_renders(tmp_path):
    paths = write_report({"checkpoint": "ckpt", "details": None, "dimensions": None}, tmp_path)
    assert set(paths) == {"markdown", "html"}
    assert "not measured" in paths["markdown"].read_text()


def test_plot_returns_none_without_data(tmp_path):
    result = copy.deepcopy(make_result())
    del result["details"]["sample_efficiency"]["curve"]
    assert plot_learning_curve(result, tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "n/a"),
        (math.nan, "n/a"),
        (0.123456, "0.123"),
        (12.3456, "12.3"),
        (-1234.5, "-1230"),
        (36000, "36000"),
        (1e-5, "1e-05"),
    ],
)
def test_fmt(value, text):
    assert fmt(value) == text


def test_what_overall_leaves_out_is_said_once_for_every_row(tmp_path):
    result = make_result()
    result["weights"] = {"robustness": 0.5, "coordination": 0.5}
    result["overall_excluded"] = {"generalization": "the env has one task level ('easy')"}
    markdown = write_report(result, tmp_path)["markdown"].read_text()
    assert "*not in overall: Generalization: the env has one task level ('easy')*" in markdown
    assert "| Generalization | not in overall |" in markdown
    assert "| Robustness | 0.5 |" in markdown
    assert "same weights for every policy and baseline" in markdown


class _PageParser(HTMLParser):
    """Image sources and table cells of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_html_report_is_self_contained(tmp_path):
    paths = write_report(make_result(), tmp_path / "evaluation")
    alone = tmp_path / "elsewhere" / "report.html"
    alone.parent.mkdir()
    shutil.copy(paths["html"], alone)
    shutil.rmtree(tmp_path / "evaluation")  # the page must not need its plots folder
    page = alone.read_text()
    assert 'src="plots/' not in page
    parser = _PageParser()
    parser.feed(page)
    assert len(parser.images) == len(ALL_PLOTS)
    for src in parser.images:
        head, data = src.split(",", 1)
        assert head == "data:image/png;base64"
        assert base64.b64decode(data)[:8] == PNG_SIGNATURE


def test_markdown_and_html_hold_the_same_tables(tmp_path):
    result = make_result("discrete")
    result["policies"].append("a|b <c>")
    result["scores"]["a|b <c>"] = {"mean": 1.0}
    paths = write_report(result, tmp_path)
    parser = _PageParser()
    parser.feed(paths["html"].read_text())
    md_cells = []
    for line in paths["markdown"].read_text().splitlines():
        if line.startswith("| "):
            cells = [c.strip() for c in line[2:-2].replace("\\|", "\0").split(" | ")]
            md_cells += [c.replace("\0", "|").replace("&lt;", "<").strip("*") for c in cells]
    assert md_cells == parser.cells
    assert "a|b <c>" in parser.cells


@pytest.mark.parametrize("name", ["dimensions", "robustness", "levels"])
def test_bar_plot_legends_stay_off_the_bars(tmp_path, monkeypatch, name):
    figures = []
    real_save = plots._save
    monkeypatch.setattr(
        plots, "_save", lambda fig, path: figures.append(fig) or real_save(fig, path)
    )
    result = make_result()
    result["not_applicable"] = {"adaptability": "one level", "faulty_agent": "one agent"}
    assert plots.PLOTS[name](result, tmp_path / f"{name}.png") is not None
    (fig,) = figures
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    (ax,) = fig.axes
    legend = ax.get_legend()
    assert legend is not None and len(legend.get_texts()) == len(result["policies"])
    box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert not box.overlaps(area)
    assert fig.bbox.contains(box.x1 - 1, box.y0 + 1)  # and it is not cut off the figure


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_action_panels_use_the_envs_action_names(tmp_path, monkeypatch, kind):
    figures = []
    real_save = plots._save
    monkeypatch.setattr(
        plots, "_save", lambda fig, path: figures.append(fig) or real_save(fig, path)
    )
    result = make_result(kind)
    names = ["hold", "buy"] if kind == "discrete" else ["cpu", "memory", "network"]
    result["env"]["action_names"] = names
    rollout_names = {"labels": ["0", "1"], "dims": ["a0", "a1", "a2"]}  # what rollout writes
    result["actions"] = {p: {**s, **rollout_names} for p, s in result["actions"].items()}
    assert plots.plot_actions(result, tmp_path / "a.png") is not None
    ax = figures[0].axes[0]
    if kind == "discrete":
        assert [t.get_text() for t in ax.get_xticklabels()] == names
    else:
        titles = [a.get_title() for a in figures[0].axes[:3]]
        assert titles == [f"policy: {n}" for n in names]
    del result["env"]["action_names"]
    figures.clear()
    plots.plot_actions(result, tmp_path / "b.png")
    ax = figures[0].axes[0]
    if kind == "discrete":
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]  # the result's labels
    else:
        assert ax.get_title() == "policy: a0"  # the env declares none
