"""Turn the result of `rlp evaluate` into a Markdown report, an HTML page and PNG plots.

:func:`write_report` lays the suite's result dict out once as a list of blocks and renders
it twice through Jinja2 templates (``templates/markdown``, ``templates/html``), so
``report.md`` and ``report.html`` hold the same tables; ``report.html`` carries its plots
inline and opens on its own; a missing section
reads "not measured: <reason>" (or "n/a on this env: <reason>" where the env cannot
support it: ``not_applicable`` in the result). Plots are drawn without pyplot
(docs/evaluation.md).

Example:
    >>> paths = write_report(result, Path("runs/x/evaluation"))  # doctest: +SKIP
    >>> paths["html"]  # doctest: +SKIP
    PosixPath('runs/x/evaluation/report.html')
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from markupsafe import Markup

from rl_platform.evaluation.plots import PLOTS
from rl_platform.evaluation.result_data import (
    ABSENT,
    DIMENSION_TITLES,
    DIMENSIONS,
    ROBUSTNESS_TESTS,
    TRAINED,
    as_number,
    fmt,
    lookup,
    lookup_dict,
    policies_of,
    union_keys,
)

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
    """What stands where a section of the result was not measured (or is n/a on the env)."""

    reason: str
    label: str = "not measured"


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
    headers = [
        "Policy",
        "Score (mean [95% CI])",
        "Normalized",
        "vs random",
        *(DIMENSION_TITLES[k] for k in keys),
    ]
    rows, columns = [], {c: [] for c in range(1, len(headers))}
    for name in policies_of(result):
        score = lookup_dict(result, "scores", name)
        dims = lookup_dict(result, "dimensions", name)
        values = [
            score.get("mean"),
            score.get("normalized"),
            score.get("vs_random"),
            *(dims.get(k) for k in keys),
        ]
        for col, value in enumerate(values, start=1):
            columns[col].append(as_number(value))
        mean_ci = fmt(score.get("mean"))
        ci = score.get("ci95")
        if as_number(score.get("mean")) is not None and isinstance(ci, list) and len(ci) == 2:
            mean_ci += f" [{fmt(ci[0])}, {fmt(ci[1])}]"
        label = f"{name} (trained)" if name == TRAINED else name
        rows.append([label, mean_ci, *(fmt(v) for v in values[1:])])
    return Table(headers, rows, _bold_best(columns))


def _not_applicable(result: dict, name: str) -> list[Block]:
    """The "n/a on this env" note of a section (``not_applicable`` in the result), if any."""
    reason = lookup(result, "not_applicable", name)
    return [Note(reason, "n/a on this env")] if isinstance(reason, str) else []


def _section(result: dict, name: str, blocks: list[Block]) -> list[Block]:
    """A dimension's blocks, or only its n/a note where the env cannot support it."""
    return _not_applicable(result, name) or blocks


def _weights(result: dict) -> list[Block]:
    weights, definitions = lookup_dict(result, "weights"), lookup_dict(result, "definitions")
    if not weights and not definitions:
        return [Note("no dimension weights or definitions in the result")]
    excluded = lookup_dict(result, "overall_excluded")

    def weight(key: str) -> str:
        if key == "sample_efficiency":
            return "apart"
        return "not in overall" if key in excluded else fmt(weights.get(key))

    rows = [
        [DIMENSION_TITLES.get(k, k), weight(k), str(definitions.get(k, ""))]
        for k in union_keys([weights, definitions], DIMENSIONS)
    ]
    blocks: list[Block] = [
        Paragraph(
            "Overall: the weighted sum of the dimensions below, with the same weights for "
            "every policy and baseline (renormalized only over what the env cannot support). "
            "Random play is the reference: it has no robustness, adaptability or overall."
        ),
        Table(["Dimension", "Weight", "How it is computed"], rows),
    ]
    blocks += [
        Note(f"{DIMENSION_TITLES.get(k, k)}: {r}", "not in overall") for k, r in excluded.items()
    ]
    return blocks


def _plot(plots: dict[str, Path], name: str, caption: str, reason: str) -> Block:
    if name in plots:
        return Image(f"plots/{plots[name].name}", caption)
    return Note(reason)


def _sample_efficiency(result: dict, plots: dict[str, Path]) -> list[Block]:
    se = lookup(result, "details", "sample_efficiency")
    if not isinstance(se, dict):
        return [Note(ABSENT)]
    intro = Paragraph(
        "Not part of overall (baselines do not learn): the greedy score of each checkpoint "
        "the run kept, on the suite's clean episodes at the main level (95% CI)."
    )
    curve = lookup_dict(se, "curve")
    points = _curve_rows(curve)
    table = Table(["Checkpoint", "Iteration", "Env steps", "Greedy score", "Normalized"], points)
    shown = [table] if points else []
    if "unavailable" in se:
        plot = _plot(plots, "learning_curve", "Greedy score per kept checkpoint", "")
        na = lookup(result, "not_applicable", "sample_efficiency")
        reason = str(na) if isinstance(na, str) else str(se["unavailable"])
        note = Note(reason, "n/a on this env" if na else "n/a")
        return [intro, note, *shown, *([plot] if isinstance(plot, Image) else [])]
    rows = [
        ["Area under the normalized greedy curve (auc)", fmt(se.get("auc"))],
        ["Env steps to 90% of the last checkpoint's score", fmt(se.get("steps_to_90pct_final"))],
        ["Env steps to the best baseline", fmt(se.get("steps_to_baseline"))],
        ["Last checkpoint's normalized score", fmt(se.get("final_normalized"))],
    ]
    return [
        intro,
        Table(["Measure", "Value"], rows),
        *shown,
        _plot(plots, "learning_curve", "Greedy learning curve", "no greedy curve in the result"),
    ]


def _curve_rows(curve: dict) -> list[list[str]]:
    """One row per kept checkpoint of the greedy curve (empty when it is malformed)."""
    steps = curve.get("env_steps")
    if not isinstance(steps, list):
        return []
    rows = []
    for i, step in enumerate(steps):

        def at(key: str, i: int = i) -> object:
            values = curve.get(key)
            return values[i] if isinstance(values, list) and i < len(values) else None

        score = fmt(at("score"))
        if as_number(at("low")) is not None and as_number(at("high")) is not None:
            score += f" [{fmt(at('low'))}, {fmt(at('high'))}]"
        rows.append(
            [fmt(at("checkpoint")), fmt(at("iteration")), fmt(step), score, fmt(at("normalized"))]
        )
    return rows


def _generalization(result: dict) -> list[Block]:
    details = lookup_dict(result, "details", "generalization")
    names = [p for p in policies_of(result) if isinstance(details.get(p), dict)]
    names += [p for p in details if p not in names and isinstance(details[p], dict)]
    if not names:
        return [Note(ABSENT)]
    unseen = union_keys(lookup(details[p], "unseen") for p in names)
    rows = [
        [
            name,
            fmt(details[name].get("trained")),
            *(fmt(lookup(details[name], "unseen", lv)) for lv in unseen),
            str(details[name].get("note") or ""),
        ]
        for name in names
    ]
    headers = ["Policy", "Trained levels", *(f"{lv} (unseen)" for lv in unseen), "Note"]
    return [Table(headers, rows)]


def _robustness(result: dict, plots: dict[str, Path]) -> list[Block]:
    details = lookup_dict(result, "details", "robustness")
    names = [p for p in policies_of(result) if isinstance(details.get(p), dict)]
    names += [p for p in details if p not in names and isinstance(details[p], dict)]
    if not names:
        return [Note(ABSENT)]
    tests = union_keys((details[p] for p in names), [t for t in ROBUSTNESS_TESTS])
    tests = [t for t in tests if any(t in details[p] for p in names)]
    rows = []
    for name in names:
        cells = []
        for test in tests:
            entry = lookup_dict(details, name, test)
            cells.append(f"{fmt(entry.get('retained'))} ({fmt(entry.get('score'))})")
        rows.append([name, *cells])
    skipped = [f"{t}: {lookup(result, 'not_applicable', t)}" for t in tests]
    skipped = [text for text, t in zip(skipped, tests) if lookup(result, "not_applicable", t)]
    return [
        Paragraph("Each cell: share of the clean score retained (mean return under the test)."),
        *(Note(text, "n/a on this env") for text in skipped),
        Table(["Policy", *tests], rows),
        _plot(plots, "robustness", "Robustness", "no robustness tests in the result"),
    ]


def _coordination(result: dict) -> list[Block]:
    details = lookup_dict(result, "details", "coordination")
    names = [p for p in policies_of(result) if isinstance(details.get(p), dict)]
    names += [p for p in details if p not in names and isinstance(details[p], dict)]
    if not names:
        return [Note(ABSENT)]
    figures = union_keys((details[p] for p in names), ["score", "action_correlation"])
    rows = [[name, *(fmt(details[name].get(f)) for f in figures)] for name in names]
    return [Table(["Policy", *figures], rows)]


def _safety(result: dict) -> list[Block]:
    details = lookup_dict(result, "details", "safety")
    if "unavailable" in details:
        return [Note(str(details["unavailable"]))]
    names = [p for p in policies_of(result) if isinstance(details.get(p), dict) and details[p]]
    if not names:
        return [Note(ABSENT)]
    shielded = bool(lookup(result, "settings", "shielded"))
    constraints = union_keys((details[p].get("violation_rate", {}) for p in names), ["any"])
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
    details = lookup_dict(result, "details", "adaptability")
    rows = []
    for name in union_keys([details], [p for p in policies_of(result) if p in details]):
        for switch, entry in lookup_dict(details, name, "switches").items():
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
    levels = lookup_dict(result, "levels")
    names = [lv for lv in levels if isinstance(levels[lv], dict)]
    if not names:
        return [Note(ABSENT)]
    policies = [p for p in policies_of(result) if any(p in levels[lv] for lv in names)]
    policies += [p for p in union_keys(levels[lv] for lv in names) if p not in policies]
    trained, main = set(result.get("trained_levels") or []), result.get("level")
    rows = []
    for level in names:
        tags = [t for t, on in (("main", level == main), ("trained", level in trained)) if on]
        label = f"{level} ({', '.join(tags)})" if tags else level
        cells = []
        for name in policies:
            entry = lookup_dict(levels, level, name)
            cell = fmt(entry.get("mean"))
            if as_number(entry.get("std")) is not None:
                cell += f" ± {fmt(entry.get('std'))}"
            cells.append(f"{cell} [{fmt(entry.get('normalized'))}]")
        rows.append([label, *cells])
    return [
        Paragraph("Each cell: mean agent return ± std [normalized score]."),
        Table(["Level", *policies], rows),
        _plot(plots, "levels", "Score per level", "no per-level scores in the result"),
    ]


def _components(result: dict, plots: dict[str, Path]) -> list[Block]:
    components = lookup_dict(result, "components")
    policies = [p for p in policies_of(result) if isinstance(components.get(p), dict)]
    policies += [p for p in components if p not in policies and isinstance(components[p], dict)]
    names = union_keys(components[p] for p in policies)
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
        [
            "Env config",
            json.dumps(lookup_dict(result, "env", "config"), sort_keys=True, default=str),
        ],
        ["Seed", fmt(result.get("seed"))],
        ["Episodes per policy", fmt(result.get("episodes"))],
        ["Main level", fmt(result.get("level"))],
        ["Trained levels", ", ".join(map(str, result.get("trained_levels") or [])) or "n/a"],
        ["Run dir", fmt(result.get("run_dir"))],
        ["Format version", fmt(result.get("format_version"))],
    ]
    rows += [[key, fmt(value)] for key, value in lookup_dict(result, "settings").items()]
    rows += [[f"timing: {key}", fmt(value)] for key, value in lookup_dict(result, "timing").items()]
    return [Table(["Setting", "Value"], rows)]


def build_report(result: dict, plots: dict[str, Path]) -> list[Block]:
    """The report as blocks, in order; `plots` maps plot names to the PNGs that exist.

    Order: title, headline table, weights and definitions, one section per dimension of
    overall, sample efficiency, safety (if measured), behaviour (actions and trace),
    per-level scores, reward components, settings.
    """
    env_id = lookup(result, "env", "id") or "unknown env"
    algorithm = result.get("algorithm") or "unknown algorithm"
    blocks: list[Block] = [
        Heading(f"Evaluation: {algorithm} on {env_id}", 1),
        Paragraph(f"Checkpoint: {result.get('checkpoint') or 'n/a'}"),
        Heading("Summary"),
        _headline(result),
        Paragraph(
            "Bold: best in column. Normalized: 0 = random, 1 = best baseline. "
            "vs random: mean - random's mean."
        ),
        *_not_applicable(result, "normalized"),
        Heading("Dimensions"),
        *_weights(result),
        _plot(plots, "dimensions", "Dimension scores", "no dimension scores in the result"),
        Heading("Generalization"),
        *_section(result, "generalization", _generalization(result)),
        Heading("Robustness"),
        *_robustness(result, plots),
        Heading("Coordination"),
        *_coordination(result),
        Heading("Adaptability"),
        *_section(result, "adaptability", _adaptability(result)),
        Heading("Sample efficiency (not in overall)"),
        *_sample_efficiency(result, plots),
        *(
            [Heading("Safety"), *_safety(result)]
            if "safety" in lookup_dict(result, "details")
            else []
        ),
        Heading("Behaviour"),
        _plot(plots, "actions", "Action distributions", "no action statistics in the result"),
        _plot(plots, "trace", "Episode trace", "no trace fields in the result"),
        *_not_applicable(result, "trace"),
        Heading("Levels"),
        *_levels(result, plots),
        Heading("Reward components"),
        *_components(result, plots),
        Heading("Settings and timing"),
        *_settings(result),
    ]
    return blocks


# -- rendering ----------------------------------------------------------------------------
# Each block kind has one Jinja2 template per format (templates/markdown/<kind>.j2,
# templates/html/<kind>.j2); the HTML environment autoescapes every value.


def _md(text: object) -> str:
    """Text safe inside a Markdown table cell; "<" is escaped so no HTML tag gets through."""
    return str(text).replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


@functools.cache
def _environment(kind: str) -> jinja2.Environment:
    """The Jinja2 environment of ``kind`` ("markdown" or "html", autoescaped)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("rl_platform.evaluation", f"templates/{kind}"),
        autoescape=kind == "html",
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md"] = _md
    return env


def _render_block(kind: str, block: Block, **extra: object) -> str:
    template = _environment(kind).get_template(f"{type(block).__name__.lower()}.j2")
    return template.render(block=block, **extra).rstrip("\n")


def render_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown (images linked by relative path)."""
    return "".join(_render_block("markdown", block) + "\n\n" for block in blocks)[:-1]


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(blocks: Sequence[Block], root: Path | None = None) -> str:
    """The blocks as one self-contained HTML page: inline CSS, images inlined as data URIs.

    Args:
        blocks: The report, from :func:`build_report`.
        root: The folder the images' ``src`` is relative to; an image found there is
            inlined, any other is linked by its path.
    """
    title = next((b.text for b in blocks if isinstance(b, Heading) and b.level == 1), "Report")
    body = []
    for block in blocks:
        extra = {}
        if isinstance(block, Image):
            path = root / block.src if root is not None else None
            extra["src"] = _data_uri(path) if path is not None and path.is_file() else block.src
        body.append(Markup(_render_block("html", block, **extra)))
    return _environment("html").get_template("page.j2").render(title=title, body=body)


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
    page.write_text(render_html(blocks, out_dir), encoding="utf-8")
    return {"markdown": markdown, "html": page, **plots}
