"""``rlp compare``: algorithms side by side over envs, as rliable and marl-eval report them.

Each input directory gives one algorithm's runs on one env (:func:`load_sources`): a
multi-seed group (``aggregate.json``), run directories (their final greedy evaluation) or a
sweep (its finished trials' objectives). :func:`compare` groups them into entries (one per
algorithm), normalizes scores per env (0 random play, 1 the best baseline) and gets every
figure from :mod:`~rl_platform.evaluation.statistics`: IQM and mean with 95% stratified
bootstrap CIs per env and over all envs, the probability of improvement of each pair and
performance profiles; :mod:`~rl_platform.evaluation.compare_report` writes them out. The
rules (which runs, which score, what stands in for a missing baseline) are in
docs/statistics.md.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rl_platform import runs
from rl_platform.evaluation import statistics
from rl_platform.runs import AGGREGATE_FILE, RunDir, read_json
from rl_platform.version import __version__

FORMAT_VERSION = 1
GREEDY = "greedy_return"  # a score: mean greedy episode return per agent of a final policy
GREEDY_METRIC = "evaluation/score"  # the same figure as a sweep's objective
EVAL_COLUMN = "eval_score"  # metrics.csv: the in-training greedy evaluation
PROFILE_POINTS = 101


class CompareError(ValueError):
    """Inputs that cannot be compared, in one paragraph (``rlp compare`` exits 2)."""


@dataclass
class Source:
    """One input's runs of one algorithm on one env, and the env's reference scores."""

    paths: list[Path]
    kind: str  # "seeds" (aggregate.json), "runs" (run directories) or "sweep"
    name: str  # the experiment's name
    algorithm: str
    env: str
    score: str  # what a score is: GREEDY, or a sweep's metric
    scores: list[float]
    runs: list[str]  # a label per score: the seed, or the sweep's trial id
    episodes: int | None = None
    random: float | None = None
    baselines: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """What the comparison records of this input (its provenance flattened in)."""
        data = asdict(self)
        data["paths"] = [str(p) for p in self.paths]
        return {**data, **data.pop("provenance")}


# --------------------------------------------------------------------------- inputs


def load_sources(paths: Sequence[str | Path]) -> list[Source]:
    """Read every input directory; run directories of one experiment become one source.

    Raises:
        CompareError: a missing directory, one that is none of the three kinds, or one
            whose files cannot give a score.
    """
    sources: list[Source] = []
    run_groups: dict[tuple[str, str, str], Source] = {}
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise CompareError(f"{path}: no such directory.")
        if path.resolve() in seen:
            raise CompareError(f"{path}: given twice; give each directory once.")
        seen.add(path.resolve())
        files = RunDir(path)
        if files.aggregate.is_file():
            sources.append(_from_aggregate(path))
        elif files.is_seed_group():
            raise CompareError(
                f"{path}: a multi-seed group with no {AGGREGATE_FILE} yet: its seeds have not "
                f"all finished; resume it with rlp train --resume {path}."
            )
        elif files.sweep.is_file():
            sources.append(_from_sweep(path))
        elif files.config.is_file():
            run = _from_run(path)
            key = (run.name, run.algorithm, run.env)
            group = run_groups.get(key)
            if group is None:
                run_groups[key] = run
                sources.append(run)
            elif run.runs[0] in group.runs:
                raise CompareError(
                    f"{path}: seed {run.runs[0]} of {run.name} is already given by "
                    f"{group.paths[group.runs.index(run.runs[0])]}; give each seed once."
                )
            else:
                group.paths += run.paths
                group.runs += run.runs
                group.scores += run.scores
        else:
            raise CompareError(
                f"{path}: holds no {AGGREGATE_FILE} (a multi-seed group: rlp train EXPERIMENT "
                f"--seeds 0-4), no {runs.SWEEP_FILE} (a sweep) and no {runs.CONFIG_FILE} (a run); "
                "nothing to compare there."
            )
    return sources


def _from_aggregate(path: Path) -> Source:
    file = RunDir(path).aggregate
    data = read_json(file)
    if not isinstance(data, dict):
        raise CompareError(f"{file}: not a JSON object; write it again with rlp train --seeds.")

    def need(key: str, kind: type) -> Any:
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CompareError(f"{file}: {key!r} is missing or not a {kind.__name__}.")
        return value

    scores = [_number(file, "scores", v) for v in need("scores", list)]
    if not scores:
        raise CompareError(f"{file}: 'scores' is empty; the group has no finished seed.")
    seeds = data.get("seeds") or list(range(len(scores)))
    if len(seeds) != len(scores):
        raise CompareError(f"{file}: {len(seeds)} seeds but {len(scores)} scores.")
    random = data.get("random")
    baselines = data.get("baselines") or {}
    if not isinstance(baselines, dict):
        raise CompareError(f"{file}: 'baselines' is not an object of name: score.")
    return Source(
        paths=[path],
        kind="seeds",
        name=need("name", str),
        algorithm=need("algorithm", str),
        env=need("env", str),
        score=need("score", str),
        scores=scores,
        runs=[str(s) for s in seeds],
        episodes=data.get("episodes"),
        random=None if random is None else _number(file, "random", random),
        baselines={str(k): _number(file, f"baselines.{k}", v) for k, v in baselines.items()},
        provenance={k: data[k] for k in ("commit", "machine") if k in data},
    )


def _from_run(path: Path) -> Source:
    files = RunDir(path)
    config = _read_yaml(files.config)
    summary = files.read_summary() or {}
    if summary.get("status") != "finished":
        raise CompareError(
            f"{path}: the run has not finished (status {summary.get('status', 'unknown')!r} "
            f"in {runs.SUMMARY_FILE}); only a finished run's final policy is compared."
        )
    score = _last_evaluation(files.metrics)
    if score is None:
        raise CompareError(
            f"{path}: no greedy evaluation of the final policy in {runs.METRICS_FILE} (its "
            "experiment has no `evaluation:` section). Train the seeds with rlp train "
            "EXPERIMENT --seeds 0-4 and compare the group directory (its aggregate.json)."
        )
    evaluation = config.get("evaluation") or {}
    return Source(
        paths=[path],
        kind="runs",
        name=str(config.get("name", path.name)),
        algorithm=_config_id(config, "algorithm", files.config),
        env=_config_id(config, "env", files.config),
        score=GREEDY,
        scores=[score],
        runs=[str(config.get("seed", 0))],
        episodes=evaluation.get("episodes") if isinstance(evaluation, dict) else None,
    )


def _from_sweep(path: Path) -> Source:
    files = RunDir(path)
    config = _read_yaml(files.sweep)
    tune = config.get("tune") or {}
    summary = files.read_summary() or {}
    metric = summary.get("metric") or tune.get("metric")
    mode = summary.get("mode") or tune.get("mode", "max")
    searched = [
        k for k in tune.get("search_space") or {} if k.split(".")[0] in ("env", "algorithm")
    ]
    varied = [k for k in searched if k in ("algorithm.id", "env.id") or k.startswith("env.")]
    if varied:
        raise CompareError(
            f"{path}: the sweep searches {', '.join(varied)}, so its trials are not one "
            "algorithm on one env; compare multi-seed groups instead."
        )
    if not metric or mode != "max":
        raise CompareError(
            f"{path}: the sweep's objective is {metric!r} with mode {mode!r}; a comparison "
            "needs a score where higher is better (mode max)."
        )
    if not files.trials_table.is_file():
        raise CompareError(f"{path}: no {runs.TRIALS_FILE}; the sweep has not been summarized.")
    scores, trials = [], []
    with files.trials_table.open(newline="") as handle:
        for row in csv.DictReader(handle):
            value = _finite(row.get("value"))
            if row.get("status") == "complete" and value is not None:
                scores.append(value)
                trials.append(str(row.get("trial", len(trials))))
    if not scores:
        raise CompareError(
            f"{path}: no trial of the sweep ran to its stop with a value of {metric}; "
            "nothing to compare."
        )
    return Source(
        paths=[path],
        kind="sweep",
        name=str(config.get("name", path.name)),
        algorithm=_config_id(config, "algorithm", files.sweep),
        env=_config_id(config, "env", files.sweep),
        score=GREEDY if metric == GREEDY_METRIC else metric,
        scores=scores,
        runs=trials,
        episodes=(config.get("evaluation") or {}).get("episodes"),
    )


def _last_evaluation(path: Path) -> float | None:
    """``eval_score`` of metrics.csv's last row (NaN there: no evaluation at the stop)."""
    if not path.is_file():
        return None
    last: dict[str, str] = {}
    with path.open(newline="") as handle:
        for last in csv.DictReader(handle):  # noqa: B007 (the last row is wanted)
            pass
    return _finite(last.get(EVAL_COLUMN))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CompareError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise CompareError(f"{path}: not an experiment (a YAML mapping).")
    return data


def _config_id(config: dict[str, Any], section: str, path: Path) -> str:
    value = config.get(section)
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    raise CompareError(f"{path}: no {section}.id.")


def _number(file: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CompareError(f"{file}: {key!r} holds {value!r}, not a finite number.")
    return float(value)


def _finite(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- entries


def entries_of(sources: Sequence[Source]) -> dict[str, list[Source]]:
    """Sources grouped into entries, one per algorithm, each with one source per env.

    Two sources of one algorithm on one env split it by experiment name
    (``qmix (two_step_qmix)``), and two of one name as well by directory.
    """
    out: dict[str, list[Source]] = {}
    for algorithm in dict.fromkeys(s.algorithm for s in sources):
        group = [s for s in sources if s.algorithm == algorithm]
        if not _clash(group):
            out[algorithm] = group
            continue
        for name in dict.fromkeys(s.name for s in group):
            named = [s for s in group if s.name == name]
            if not _clash(named):
                out[f"{algorithm} ({name})"] = named
                continue
            for s in named:
                label = f"{algorithm} ({name}, {s.paths[0].name})"
                out[label if label not in out else f"{algorithm} ({name}, {s.paths[0]})"] = [s]
    return out


def _clash(group: Sequence[Source]) -> bool:
    envs = [s.env for s in group]
    return len(envs) != len(set(envs))


# --------------------------------------------------------------------------- statistics


def compare(
    paths: Sequence[str | Path], baseline: str | None = None, reps: int = statistics.REPS
) -> dict[str, Any]:
    """The whole comparison of the input directories, JSON-ready (``compare.json``).

    Args:
        paths: multi-seed group, run or sweep directories (see :func:`load_sources`).
        baseline: an entry's name: probability of improvement of each other entry over
            it (default: of each pair, in input order).
        reps: bootstrap replications.

    Raises:
        CompareError: the inputs cannot be compared like for like (see docs/statistics.md).
    """
    sources = load_sources(paths)
    kinds = sorted({s.score for s in sources})
    if len(kinds) > 1:
        which = "; ".join(f"{s.paths[0]}: {s.score}" for s in sources)
        raise CompareError(
            f"the inputs score different things ({which}); a comparison needs one score for "
            f"all ({GREEDY}: the greedy return of each final policy, as multi-seed groups have)."
        )
    entries = entries_of(sources)
    if len(entries) < 2:
        raise CompareError(
            f"one entry only ({next(iter(entries))}); give the runs of another algorithm too."
        )
    if baseline is not None and baseline not in entries:
        raise CompareError(
            f"--baseline {baseline!r} is not an entry; entries: {', '.join(entries)}."
        )
    notes: list[str] = []
    all_envs = list(dict.fromkeys(s.env for s in sources))
    envs = [e for e in all_envs if all(any(s.env == e for s in g) for g in entries.values())]
    if not envs:
        raise CompareError(
            "no env is shared by every entry ("
            + "; ".join(f"{n}: {', '.join(s.env for s in g)}" for n, g in entries.items())
            + "); compare algorithms run on the same envs."
        )
    for env in all_envs:
        if env not in envs:
            notes.append(f"{env} is left out: not every entry has runs there.")
            continue
        episodes = {s.episodes for s in sources if s.env == env}
        if len(episodes) > 1:
            notes.append(
                f"{env}: the inputs' scores are means over different numbers of greedy "
                f"episodes ({', '.join(map(str, sorted(episodes, key=str)))})."
            )
    references = {
        e: _reference(e, [s for s in sources if s.env == e], len(envs), notes) for e in envs
    }

    table: dict[str, dict[str, Any]] = {}
    normalized: dict[str, np.ndarray] = {}
    for label, group in entries.items():
        per_env, columns = {}, []
        for env in envs:
            source = next(s for s in group if s.env == env)
            ref = references[env]
            raw = statistics.aggregates(source.scores, reps=reps)
            per_env[env] = {
                "runs": len(source.scores),
                "scores": source.scores,
                "normalized": [_scale(v, ref) for v in source.scores],
                **{k: e.to_json() for k, e in raw.items()},
                **{f"normalized_{k}": _scaled(e, ref) for k, e in raw.items()},
            }
            columns.append(per_env[env]["normalized"])
        k = min(len(c) for c in columns)
        if any(len(c) > k for c in columns):
            notes.append(
                f"{label}: over all envs, the first {k} runs of each env are used (the "
                "stratified bootstrap needs as many runs per env)."
            )
        normalized[label] = np.array([c[:k] for c in columns]).T  # (runs, envs)
        overall = statistics.aggregates(normalized[label], reps=reps)
        table[label] = {
            "algorithm": group[0].algorithm,
            "names": list(dict.fromkeys(s.name for s in group)),
            "sources": [s.to_json() for s in group],
            "envs": per_env,
            "all": {"runs_per_env": k, **{n: e.to_json() for n, e in overall.items()}},
        }

    labels = list(entries)
    if baseline is not None:
        pairs = [(x, baseline) for x in labels if x != baseline]
    else:
        pairs = [(x, y) for i, x in enumerate(labels) for y in labels[i + 1 :]]
    improvement = [
        {
            "x": x,
            "y": y,
            **statistics.probability_of_improvement(
                normalized[x], normalized[y], reps=reps
            ).to_json(),
        }
        for x, y in pairs
    ]
    pooled = np.concatenate([a.ravel() for a in normalized.values()])
    scale = _scale_name(references)
    low, high = float(pooled.min()), float(pooled.max())
    if scale != "raw":
        low, high = min(low, 0.0), max(high, 1.0)
    pad = 0.05 * (high - low or 1.0)
    taus = np.linspace(low - pad, high + pad, PROFILE_POINTS)
    profiles = statistics.performance_profile(normalized, taus, reps=reps)
    return {
        "kind": "compare",
        "format_version": FORMAT_VERSION,
        "inputs": [str(p) for p in paths],
        "score": kinds[0],
        "scale": scale,
        "envs": references,
        "entries": table,
        "baseline": baseline,
        "probability_of_improvement": improvement,
        "performance_profile": {
            "tau": [float(t) for t in taus],
            "entries": {n: {k: v for k, v in p.items() if k != "tau"} for n, p in profiles.items()},
        },
        "confidence": statistics.CONFIDENCE,
        "reps": reps,
        "notes": notes,
        "rl_platform": __version__,
    }


def _reference(env: str, sources: list[Source], n_envs: int, notes: list[str]) -> dict[str, Any]:
    """The env's 0 and 1: random play and the best baseline (else the documented fallback)."""
    randoms = [s.random for s in sources if s.random is not None]
    names = dict.fromkeys(n for s in sources for n in s.baselines)
    baselines = {
        n: float(np.mean([s.baselines[n] for s in sources if n in s.baselines])) for n in names
    }
    random = float(np.mean(randoms)) if randoms else None
    if len(set(randoms)) > 1 or any(
        len({s.baselines[n] for s in sources if n in s.baselines}) > 1 for n in names
    ):
        notes.append(
            f"{env}: the inputs measured random play or baselines differently; "
            "their means are used."
        )
    best = max(baselines, key=baselines.__getitem__) if baselines else None
    ref: dict[str, Any] = {"random": random, "baselines": baselines, "best_baseline": best}
    if random is not None and best is not None and baselines[best] > random:
        return {**ref, "zero": random, "one": baselines[best], "rule": "baseline"}
    why = "no baseline" if best is None else f"best baseline {best} not above random play"
    if n_envs == 1:
        notes.append(f"{env}: {why}; raw scores are compared (one env).")
        return {**ref, "zero": 0.0, "one": 1.0, "rule": "raw"}
    pooled = [v for s in sources for v in s.scores]
    zero = random if random is not None else min(pooled)
    one = max(pooled)
    if one <= zero:
        one = zero + 1.0
    notes.append(
        f"{env}: {why}; 0 is {'random play' if random is not None else 'the lowest run'} and 1 "
        "the highest run of any entry there."
    )
    return {**ref, "zero": zero, "one": one, "rule": "best run"}


def _scale(value: float, ref: dict[str, Any]) -> float:
    return (value - ref["zero"]) / (ref["one"] - ref["zero"])


def _scaled(estimate: statistics.Estimate, ref: dict[str, Any]) -> dict[str, float]:
    """An estimate of raw scores on the normalized scale (affine: the CI maps exactly)."""
    return {k: _scale(v, ref) for k, v in estimate.to_json().items()}


def _scale_name(references: dict[str, dict[str, Any]]) -> str:
    rules = {r["rule"] for r in references.values()}
    return "raw" if rules == {"raw"} else "normalized"
