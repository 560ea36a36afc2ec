"""Training monitor: anomaly detection on RLlib results, a per-iteration row, a dashboard.

The seed's ``RLMonitoringDashboard`` logged rewards, epsilon and value estimates and flagged
"sudden performance drops" (mean of the last 10 rewards below half the mean of the 40
before) and "instability" (recent reward variance above twice its historical mean). Done
here on what RLlib reports once per training iteration:

* :class:`AnomalyDetector` is fed one Tune/RLlib result dict per iteration (nested as Tune
  passes it to callbacks, or flattened with ``/`` as in ``progress.csv``) and returns the
  :class:`Anomaly` objects whose condition *starts* at that iteration. Each condition is
  reported once per onset and re-armed once it clears. An iteration's
  ``env_runners/episode_return_mean`` (RLlib's mean over its recent episodes) is **one
  observation** in the return windows; iterations without a finite value add none.
* The rules (``MonitoringSpec`` holds every number):

  - ``reward_collapse``: with ``R`` = ``collapse_recent`` and ``B`` = ``collapse_before``,
    once ``R + B`` observations exist, let ``recent`` be the mean of the last ``R``,
    ``earlier`` the mean of the ``B`` before them and ``scale = max(|earlier|, std of
    those B)``. Collapse when ``recent < earlier - (1 - collapse_ratio) * scale``. For a
    positive, steady ``earlier`` this is the seed's ``recent < ratio * earlier``; for a
    negative one it means "worse by ``(1 - ratio) * |earlier|``" (-10 -> below -15 at
    0.5); the ``std`` term keeps a noisy near-zero baseline from firing on noise.
  - ``instability``: once ``window`` observations exist, ``noise`` = std of the
    successive differences of the last ``window`` observations / sqrt(2) (the noise of an
    i.i.d. series, nearly blind to a trend or a single step, which ``reward_collapse``
    covers) and ``scale = max(|mean of the last window|, |mean of the last
    instability_history|, instability_min_scale)``. Unstable when ``noise >
    instability_ratio * scale``, i.e. the return swings more than ``ratio`` times its
    typical magnitude from one iteration to the next.
  - ``nan``: a NaN or infinite number in any ``learners/<module>/<stat>`` (except the
    counters ``num_*``, which RLlib reports as NaN for parameter counts, and timers) or in
    the episode-return figures of ``env_runners`` (one anomaly per key).
  - ``entropy_collapse``: per module with ``learners/<module>/entropy`` (skipped when
    absent, e.g. QMIX, IQL, MADDPG), when ``entropy < entropy_floor * initial`` where
    ``initial`` is the first finite entropy seen; modules whose initial entropy is <= 0
    (narrow Gaussians: differential entropy can be negative) are skipped.
  - ``stalled_throughput``: env steps per second of an iteration (delta of
    ``num_env_steps_sampled_lifetime`` since the previous result over
    ``time_this_iter_s``) below ``stall_ratio`` times the median of the earlier
    iterations' rates, once ``stall_warmup`` earlier rates exist.

* :func:`monitor_row` flattens the figures a person watches per iteration and per policy
  (returns, reward components, exploration, value estimates, losses, KL, curriculum
  level, throughput, evaluation score) into one ``dict[str, float]``.
* :class:`AnomalyLog` appends anomalies to ``RUN_DIR/anomalies.jsonl``;
  :func:`read_anomalies` reads them back.
* :func:`render_dashboard` turns ``trial/result.json`` (a live run's partial last line is
  skipped) and ``anomalies.jsonl`` into PNGs and a self-contained ``index.html`` under
  ``RUN_DIR/monitor/``; :func:`follow` re-renders while a run is live.
* :class:`RunMonitor` ties detector and log together for the driver-side Tune callback
  and :func:`anomaly_stopper` (stop the trial on the kinds in ``stop_on``).

TensorBoard already receives every numeric result key from Tune; this module is for the
run directory, the progress display and people without TensorBoard.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field

from rl_platform.yaml_model import YamlModel

log = logging.getLogger(__name__)

ANOMALIES_FILE = "anomalies.jsonl"
MONITOR_DIR = "monitor"
RESULT_FILE = "trial/result.json"
SUMMARY_FILE = "summary.json"
RETURN_KEY = "env_runners/episode_return_mean"
ENV_STEPS_KEY = "num_env_steps_sampled_lifetime"
ALL_MODULES = "__all_modules__"

AnomalyKind = Literal[
    "reward_collapse", "instability", "nan", "entropy_collapse", "stalled_throughput"
]
ANOMALY_KINDS: tuple[str, ...] = AnomalyKind.__args__  # type: ignore[attr-defined]

# Episode-return figures scanned for NaN/inf (prefixes under env_runners/).
_RETURN_PREFIXES = (
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
EXPLORATION_STATS = ("entropy", "epsilon", "exploration_noise", "noise_scale", "curr_entropy_coeff")


class MonitoringSpec(YamlModel):
    """Anomaly rules and which anomalies stop a run (see the module docstring for the rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run the anomaly detector during training.")
    stop_on: list[AnomalyKind] = Field(
        default_factory=list,
        description="Anomaly kinds that stop the run when they occur (e.g. ['nan']).",
    )
    collapse_recent: int = Field(
        10, ge=1, description="reward_collapse: observations (iterations) in the recent mean."
    )
    collapse_before: int = Field(
        40, ge=1, description="reward_collapse: observations in the earlier mean before them."
    )
    collapse_ratio: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="reward_collapse: fires when recent < earlier - (1 - ratio) * scale, "
        "scale = max(|earlier|, std of the earlier window).",
    )
    window: int = Field(
        10, ge=3, description="instability: observations whose iteration-to-iteration noise counts."
    )
    instability_ratio: float = Field(
        2.0, gt=0.0, description="instability: fires when noise > ratio * return magnitude."
    )
    instability_history: int = Field(
        50, ge=1, description="instability: observations in the long-run mean of the magnitude."
    )
    instability_min_scale: float = Field(
        0.0,
        ge=0.0,
        description="instability: smallest return magnitude (env units); set it for envs "
        "whose returns hover around zero.",
    )
    entropy_floor: float | None = Field(
        0.01,
        ge=0.0,
        lt=1.0,
        description="entropy_collapse: fires when a module's entropy < floor * its initial "
        "entropy (None: off). Meant for stochastic policies.",
    )
    stall_ratio: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="stalled_throughput: fires when env steps/s < ratio * median rate so far.",
    )
    stall_warmup: int = Field(
        3, ge=1, description="stalled_throughput: earlier rates needed before it can fire."
    )


@dataclass(frozen=True)
class Anomaly:
    """One anomaly at its onset.

    Attributes:
        kind: One of :data:`ANOMALY_KINDS`.
        iteration: The training iteration whose result showed it.
        message: One readable sentence with the numbers.
        value: The observed figure (NaN for a NaN anomaly).
        threshold: The bound it crossed.
        module: The RLModule it concerns, if any.
        key: The result key it was read from, if one.
    """

    kind: str
    iteration: int
    message: str
    value: float
    threshold: float
    module: str | None = None
    key: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite numbers become strings "nan", "inf", "-inf")."""
        out = asdict(self)
        for name in ("value", "threshold"):
            if not math.isfinite(out[name]):
                out[name] = str(out[name])
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Anomaly:
        """Inverse of :meth:`to_json`."""
        return cls(
            kind=str(data["kind"]),
            iteration=int(data["iteration"]),
            message=str(data["message"]),
            value=float(data["value"]),
            threshold=float(data["threshold"]),
            module=data.get("module"),
            key=data.get("key"),
        )


# --------------------------------------------------------------------------- results


def flatten_result(result: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a nested result dict into ``a/b/c`` keys (already-flat keys stay as they are)."""
    flat: dict[str, Any] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_result(value, name + "/"))
        else:
            flat[name] = value
    return flat


def _number(value: Any) -> float | None:
    """``value`` as a float if it is a real number (bools and strings are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _finite(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and math.isfinite(number) else None


def _learner_stats(flat: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """``(module, stat, value)`` for every ``learners/<module>/<stat>`` (stat may hold ``/``)."""
    for key, value in flat.items():
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[0] == "learners":
            yield parts[1], parts[2], value


def _env_steps_lifetime(flat: Mapping[str, Any]) -> float | None:
    steps = _finite(flat.get(ENV_STEPS_KEY))
    return steps if steps is not None else _finite(flat.get(f"env_runners/{ENV_STEPS_KEY}"))


def _fresh_evaluation(flat: Mapping[str, Any]) -> dict[str, float]:
    """Numeric ``evaluation/*`` figures, unless carried forward from an earlier iteration."""
    iteration = flat.get("training_iteration")
    evaluated = flat.get("evaluation/iteration")
    if evaluated is not None and iteration is not None and evaluated != iteration:
        return {}
    out = {}
    for key, value in flat.items():
        number = _number(value)
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
        number = _number(value)
        if number is not None:
            row[name] = number

    put("iteration", flat.get("training_iteration"))
    put("env_steps", _env_steps_lifetime(flat))
    sampled = _finite(flat.get("env_runners/num_env_steps_sampled"))
    elapsed = _finite(flat.get("time_this_iter_s"))
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
    for module, stat, value in _learner_stats(flat):
        if module != ALL_MODULES and stat in wanted:
            put(f"{stat}/{module}", value)
    for stat in ("epsilon", "exploration_noise", "noise_scale"):
        put(f"{stat}/env_runners", flat.get(f"env_runners/{stat}"))
    put("curriculum/level", flat.get("curriculum/level"))
    put("curriculum/score", flat.get("curriculum/score"))
    row.update(_fresh_evaluation(flat))
    return row


# --------------------------------------------------------------------------- detection


class AnomalyDetector:
    """Detects the anomalies of :class:`MonitoringSpec` in a stream of results.

    Keeps its own history; feed every iteration's result, in order, to :meth:`observe`.
    """

    def __init__(self, spec: MonitoringSpec | None = None) -> None:
        self.spec = spec or MonitoringSpec()
        self.returns: list[float] = []
        self.rates: list[float] = []
        self.initial_entropy: dict[str, float] = {}
        self._active: set[tuple[str, str]] = set()
        self._last_steps: float | None = None

    def observe(self, result: Mapping[str, Any]) -> list[Anomaly]:
        """Take one iteration's result; return the anomalies that start at it."""
        flat = flatten_result(result)
        iteration = int(_number(flat.get("training_iteration")) or len(self.returns) + 1)
        found: list[Anomaly] = []
        conditions = [
            *self._nan(flat, iteration),
            *self._returns(flat, iteration),
            *self._entropy(flat, iteration),
            *self._throughput(flat, iteration),
        ]
        for ident, anomaly in conditions:
            if anomaly is None:
                self._active.discard(ident)
            elif ident not in self._active:
                self._active.add(ident)
                found.append(anomaly)
        return found

    # Each rule yields (identity, Anomaly | None) for every condition it evaluated: None
    # means "evaluated and clear", which re-arms that identity.

    def _nan(self, flat: Mapping[str, Any], iteration: int):
        for key, value in flat.items():
            number = _number(value)
            if number is None:
                continue
            module = None
            if key.startswith("learners/"):
                parts = key.split("/")
                module = parts[1] if len(parts) > 2 else None
                if parts[-1].startswith("num_") or "timer" in key:
                    continue
            elif not key.startswith(_RETURN_PREFIXES):
                continue
            bad = None
            if not math.isfinite(number):
                where = f" of module {module}" if module else ""
                bad = Anomaly(
                    kind="nan",
                    iteration=iteration,
                    message=f"{key}{where} is {number} at iteration {iteration}.",
                    value=number,
                    threshold=math.inf,
                    module=module,
                    key=key,
                )
            yield ("nan", key), bad

    def _returns(self, flat: Mapping[str, Any], iteration: int):
        spec = self.spec
        value = _finite(flat.get(RETURN_KEY))
        if value is None:
            return
        self.returns.append(value)
        obs = self.returns
        need = spec.collapse_recent + spec.collapse_before
        if len(obs) >= need:
            recent = statistics.fmean(obs[-spec.collapse_recent :])
            before = obs[-need : -spec.collapse_recent]
            earlier = statistics.fmean(before)
            spread = statistics.pstdev(before) if len(before) > 1 else 0.0
            bound = earlier - (1.0 - spec.collapse_ratio) * max(abs(earlier), spread)
            bad = None
            if recent < bound:
                bad = Anomaly(
                    kind="reward_collapse",
                    iteration=iteration,
                    message=(
                        f"Episode return collapsed at iteration {iteration}: mean of the last "
                        f"{spec.collapse_recent} iterations {recent:.4g} is below {bound:.4g} "
                        f"(earlier mean {earlier:.4g} over {spec.collapse_before} iterations)."
                    ),
                    value=recent,
                    threshold=bound,
                    key=RETURN_KEY,
                )
            yield ("reward_collapse", ""), bad
        if len(obs) >= spec.window:
            recent_obs = obs[-spec.window :]
            diffs = [b - a for a, b in zip(recent_obs, recent_obs[1:])]
            noise = statistics.pstdev(diffs) / math.sqrt(2.0)
            scale = max(
                abs(statistics.fmean(recent_obs)),
                abs(statistics.fmean(obs[-spec.instability_history :])),
                spec.instability_min_scale,
            )
            bound = spec.instability_ratio * scale
            bad = None
            if noise > bound:
                bad = Anomaly(
                    kind="instability",
                    iteration=iteration,
                    message=(
                        f"Episode return is unstable at iteration {iteration}: iteration-to-"
                        f"iteration noise {noise:.4g} over the last {spec.window} iterations "
                        f"exceeds {spec.instability_ratio:g} x its magnitude {scale:.4g}."
                    ),
                    value=noise,
                    threshold=bound,
                    key=RETURN_KEY,
                )
            yield ("instability", ""), bad

    def _entropy(self, flat: Mapping[str, Any], iteration: int):
        floor = self.spec.entropy_floor
        if floor is None:
            return
        for module, stat, value in _learner_stats(flat):
            entropy = _finite(value)
            if stat != "entropy" or module == ALL_MODULES or entropy is None:
                continue
            initial = self.initial_entropy.setdefault(module, entropy)
            if initial <= 0:
                continue
            bound = floor * initial
            bad = None
            if entropy < bound:
                bad = Anomaly(
                    kind="entropy_collapse",
                    iteration=iteration,
                    message=(
                        f"Policy entropy of module {module} collapsed at iteration {iteration}: "
                        f"{entropy:.4g} < {floor:g} x initial {initial:.4g}."
                    ),
                    value=entropy,
                    threshold=bound,
                    module=module,
                    key=f"learners/{module}/entropy",
                )
            yield ("entropy_collapse", module), bad

    def _throughput(self, flat: Mapping[str, Any], iteration: int):
        steps = _env_steps_lifetime(flat)
        elapsed = _finite(flat.get("time_this_iter_s"))
        last, self._last_steps = self._last_steps, steps
        if steps is None or last is None or not elapsed or elapsed <= 0:
            return
        rate = (steps - last) / elapsed
        earlier = list(self.rates)
        self.rates.append(rate)
        if len(earlier) < self.spec.stall_warmup:
            return
        median = statistics.median(earlier)
        bound = self.spec.stall_ratio * median
        bad = None
        if rate < bound:
            bad = Anomaly(
                kind="stalled_throughput",
                iteration=iteration,
                message=(
                    f"Throughput stalled at iteration {iteration}: {rate:.4g} env steps/s is "
                    f"below {self.spec.stall_ratio:g} x the median {median:.4g} so far."
                ),
                value=rate,
                threshold=bound,
                key=ENV_STEPS_KEY,
            )
        yield ("stalled_throughput", ""), bad


# --------------------------------------------------------------------------- log


class AnomalyLog:
    """Appends anomalies to ``RUN_DIR/anomalies.jsonl``, one JSON object per line."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ANOMALIES_FILE

    def append(self, anomalies: Iterable[Anomaly]) -> None:
        """Append ``anomalies`` (nothing is written, not even the file, for none)."""
        lines = [json.dumps(a.to_json()) + "\n" for a in anomalies]
        if lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.writelines(lines)


def read_anomalies(run_dir: str | Path) -> list[Anomaly]:
    """The anomalies logged in ``RUN_DIR/anomalies.jsonl`` (empty when none were)."""
    path = Path(run_dir) / ANOMALIES_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(Anomaly.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash
    return out


class RunMonitor:
    """The driver's monitor of one run: detector + log, safe to call twice per iteration.

    Tune calls the stopper before the callbacks with the same result; both call
    :meth:`observe`, which detects and logs once per ``training_iteration``.
    """

    def __init__(self, spec: MonitoringSpec, run_dir: str | Path) -> None:
        self.spec = spec
        self.detector = AnomalyDetector(spec)
        self.log = AnomalyLog(run_dir)
        self.anomalies: list[Anomaly] = []
        self.stop_reason: Anomaly | None = None
        self._seen: tuple[int, list[Anomaly]] | None = None

    def observe(self, result: Mapping[str, Any]) -> list[Anomaly]:
        """The anomalies starting at this result's iteration (detected and logged once)."""
        iteration = int(_number(result.get("training_iteration")) or -1)
        if self._seen is not None and self._seen[0] == iteration:
            return self._seen[1]
        found = self.detector.observe(result) if self.spec.enabled else []
        self._seen = (iteration, found)
        self.anomalies.extend(found)
        self.log.append(found)
        for anomaly in found:
            log.warning("anomaly: %s", anomaly.message)
            if self.stop_reason is None and anomaly.kind in self.spec.stop_on:
                self.stop_reason = anomaly
        return found

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles run configs (tuner.pkl); a resumed run starts with a fresh history.
        return {"spec": self.spec, "run_dir": self.log.path.parent}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["run_dir"])


def anomaly_stopper(monitor: RunMonitor) -> Any:
    """A ``ray.tune.Stopper`` that stops the trial at the first anomaly in ``stop_on``."""
    from ray.tune import Stopper

    class AnomalyStopper(Stopper):
        """Stops a trial when :class:`RunMonitor` saw an anomaly listed in ``stop_on``."""

        def __init__(self, monitor: RunMonitor) -> None:
            self.monitor = monitor

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            self.monitor.observe(result)
            return self.monitor.stop_reason is not None

        def stop_all(self) -> bool:
            return False

    return AnomalyStopper(monitor)


# --------------------------------------------------------------------------- dashboard


def read_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """The results in ``RUN_DIR/trial/result.json``; a line cut short (live run) is skipped."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return []
    results = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return results


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
        stop_when_finished: Return once ``summary.json`` exists (after a last render).
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


# --------------------------------------------------------------------------- csv

MONITOR_CSV = "monitor.csv"


def append_monitor_csv(
    run_dir: str | Path, result: Mapping[str, Any], extra: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Append this iteration's :func:`monitor_row` to ``RUN_DIR/monitor.csv``.

    Columns are the union over iterations: when a row brings a new figure (an evaluation,
    a level), the file is rewritten with the wider header, earlier rows left blank there.
    """
    import csv

    row = monitor_row(result)
    for key, value in (extra or {}).items():
        row.setdefault(key, value)
    path = Path(run_dir) / MONITOR_CSV
    rows: list[dict[str, Any]] = []
    header: list[str] = []
    if path.is_file():
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            if not set(row) <= set(header):
                rows = list(reader)
    if header and set(row) <= set(header):
        with path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=header).writerow(row)
        return row
    header += [k for k in row if k not in header]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows([*rows, row])
    return row


# --------------------------------------------------------------------------- actions

ACTIONS_KEY = "actions"
ACTION_SAMPLE_PER_EPISODE = 16  # action values per episode, module and dim kept for histograms
ACTION_SAMPLE_PER_CALL = 256  # at most this many of them logged per module, dim and sample()


class EpisodeWindow:
    """Per-episode values held until ``on_sample_end``, then logged as windowed means.

    A windowed mean over the last ``window`` episodes only ever sees the last
    ``window`` values logged, so logging just those at the end of each ``sample()``
    reduces to the same figure as logging every episode's value as it ends, at a
    fraction of the cost when a batched runner ends hundreds of episodes per call.
    """

    def __init__(self) -> None:
        self._values: dict[tuple[str, ...], list[float]] = {}

    def add(self, key: tuple[str, ...], value: float) -> None:
        """One episode's value of metric `key`."""
        self._values.setdefault(key, []).append(value)

    def flush(self, metrics_logger: Any, window: int) -> None:
        """Log the last `window` values of each metric (``reduce="mean"``) and forget all."""
        values, self._values = self._values, {}
        if metrics_logger is None:
            return
        for key, series in values.items():
            for value in series[-window:]:
                metrics_logger.log_value(key, value, reduce="mean", window=window)


def smoothing_window(env_runner: Any) -> int:
    """The episodes RLlib averages its episode metrics over (100 unless configured)."""
    config = getattr(env_runner, "config", None)
    return int(getattr(config, "metrics_num_episodes_for_smoothing", 100) or 100)


def episode_actions(sa_episode: Any) -> Any:
    """An agent episode's actions as one array (read from a numpy'ized buffer directly)."""
    import numpy as np

    buffer = sa_episode.actions
    if getattr(buffer, "finalized", False) and isinstance(buffer.data, np.ndarray):
        return buffer.data[buffer.lookback :]
    return np.asarray(sa_episode.get_actions())


def action_metrics_callback() -> type:
    """The RLlib callback class that logs each policy's action distribution.

    Per module, as means over the last ``metrics_num_episodes_for_smoothing`` episodes
    (``env_runners/actions/<module>/...``, like RLlib's episode metrics): the frequency
    of each discrete action (``p_<k>``), or each continuous dimension's mean, std and the
    share of values at or beyond the Box bounds (``mean_<d>``, ``std_<d>``,
    ``saturated``); and up to :data:`ACTION_SAMPLE_PER_EPISODE` sampled values per
    episode and dimension, of which the latest :data:`ACTION_SAMPLE_PER_CALL` per
    ``sample()`` call are logged (``sample_<d>``, a list Tune's TensorBoard logger draws
    as a histogram). Episodes' actions are kept as they end and summarized at
    ``on_sample_end``, only for the episodes the window keeps (:class:`EpisodeWindow`):
    a batched runner ends hundreds of episodes per call. Made on demand so that
    importing this module stays free of Ray.
    """
    global _ACTION_CALLBACK
    if _ACTION_CALLBACK is not None:
        return _ACTION_CALLBACK
    import gymnasium as gym
    import numpy as np
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class ActionMetricsCallback(RLlibCallback):
        """Keeps each episode's actions per module; logs their statistics per sample() call."""

        def __init__(self) -> None:
            super().__init__()
            self._rng = np.random.default_rng(0)
            self._episodes: dict[str, list[tuple[np.ndarray, Any]]] = {}

        def on_episode_end(self, *, episode, env_runner=None, metrics_logger=None, **kwargs):  # noqa: D102
            if metrics_logger is None or not hasattr(episode, "agent_episodes"):
                return
            by_module: dict[str, list[Any]] = {}
            for agent, sa_episode in episode.agent_episodes.items():
                actions = episode_actions(sa_episode)
                if actions.size:
                    by_module.setdefault(episode.module_for(agent), []).append(actions)
            for module, parts in by_module.items():
                space = _action_space(getattr(env_runner, "env", None), episode, module)
                self._episodes.setdefault(module, []).append((parts, space))

        def on_sample_end(self, *, env_runner=None, metrics_logger=None, **kwargs):  # noqa: D102
            episodes, self._episodes = self._episodes, {}
            if metrics_logger is None:
                return
            window = smoothing_window(env_runner)
            for module, kept in episodes.items():
                # Only the last `window` episodes count in a windowed mean: the others
                # need no statistics at all (see EpisodeWindow).
                values = EpisodeWindow()
                samples: dict[int, list[np.ndarray]] = {}
                for parts, space in kept[-window:]:
                    self._episode(module, np.concatenate(parts), space, values, samples)
                values.flush(metrics_logger, window)
                for d, picked in samples.items():
                    picked = np.concatenate(picked)[-ACTION_SAMPLE_PER_CALL:]
                    for value in picked.tolist():
                        metrics_logger.log_value(
                            (ACTIONS_KEY, module, f"sample_{d}"), value, reduce="item_series"
                        )

        def _episode(self, module, values, space, out, samples) -> None:
            if isinstance(space, gym.spaces.Discrete) or values.dtype.kind in "iu":
                counts = np.bincount(values.astype(int).ravel(), minlength=_n(space))
                for k, share in enumerate((counts / counts.sum()).tolist()):
                    out.add((ACTIONS_KEY, module, f"p_{k}"), share)
                return
            flat = values.reshape(len(values), -1)
            for d, (mean, std) in enumerate(zip(flat.mean(0).tolist(), flat.std(0).tolist())):
                out.add((ACTIONS_KEY, module, f"mean_{d}"), mean)
                out.add((ACTIONS_KEY, module, f"std_{d}"), std)
            picked = flat[self._rng.integers(0, len(flat), ACTION_SAMPLE_PER_EPISODE)]
            for d in range(flat.shape[1]):
                samples.setdefault(d, []).append(picked[:, d])
            if isinstance(space, gym.spaces.Box):
                low, high = space.low.reshape(-1), space.high.reshape(-1)
                saturated = (flat <= low) | (flat >= high)
                out.add((ACTIONS_KEY, module, "saturated"), float(saturated.mean()))

    _ACTION_CALLBACK = ActionMetricsCallback
    return ActionMetricsCallback


_ACTION_CALLBACK: type | None = None


def _action_space(env: Any, episode: Any, module: str) -> Any:
    """The action space of one of `module`'s agents (None when it cannot be found)."""
    agent = next((a for a in episode.agent_episodes if episode.module_for(a) == module), None)
    for candidate in (getattr(env, "unwrapped", None), env):
        spaces = getattr(candidate, "action_spaces", None)
        if isinstance(spaces, dict) and agent in spaces:
            return spaces[agent]
        envs = getattr(candidate, "envs", None)
        if envs:
            inner = getattr(envs[0], "unwrapped", envs[0])
            if agent in getattr(inner, "action_spaces", {}):
                return inner.action_spaces[agent]
    return None


def _n(space: Any) -> int:
    return int(getattr(space, "n", 0) or 0)
