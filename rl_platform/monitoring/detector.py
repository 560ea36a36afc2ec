"""Anomaly detection on one result per training iteration (:class:`AnomalyDetector`)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rl_platform.config.monitoring import MonitoringSpec
from rl_platform.monitoring.results import (
    ALL_MODULES,
    RETURN_PREFIXES,
    env_steps_lifetime,
    finite,
    flatten_result,
    learner_stats,
    to_number,
)
from rl_platform.stopping import ENV_STEPS_KEY, RETURN_KEY


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
        iteration = int(to_number(flat.get("training_iteration")) or len(self.returns) + 1)
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
            number = to_number(value)
            if number is None:
                continue
            module = None
            if key.startswith("learners/"):
                parts = key.split("/")
                module = parts[1] if len(parts) > 2 else None
                if parts[-1].startswith("num_") or "timer" in key:
                    continue
            elif not key.startswith(RETURN_PREFIXES):
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
        value = finite(flat.get(RETURN_KEY))
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
        for module, stat, value in learner_stats(flat):
            entropy = finite(value)
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
        steps = env_steps_lifetime(flat)
        elapsed = finite(flat.get("time_this_iter_s"))
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
