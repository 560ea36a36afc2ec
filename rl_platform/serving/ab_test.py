"""A/B tests of two policies in serving: sticky routing, a feedback store, the report.

A session is routed to the champion or the challenger by a hash of its id
(:class:`ABRouter`), so a user sees one policy for the whole session. Every decision
served is written to a :class:`FeedbackStore` (SQLite, what the request carried as
JSON); rewards reported later attach to the session's latest decision. :func:`ab_report`
compares the arms' sessions (each one's mean reward) with an always-valid sequential
test (:mod:`rl_platform.serving.sequential`), and the same rows are the transitions
:mod:`rl_platform.serving.finetune` learns from.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rl_platform.serving import sequential

CHAMPION, CHALLENGER = "champion", "challenger"
ARMS = (CHAMPION, CHALLENGER)
SCHEMA_VERSION = 1
# Rows read per query while iterating transitions: the lock is held per page, not per loop.
_PAGE = 1000
# A reward the statistics can use: a stored number (SQLite keeps whatever type it is given,
# so a hand-edited or older store may hold text); infinities are filtered in Python.
_NUMERIC_REWARD = "typeof(reward) IN ('integer', 'real')"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    arm TEXT NOT NULL,
    observations TEXT NOT NULL,
    actions TEXT NOT NULL,
    time REAL NOT NULL,
    reward REAL,
    rewarded_at REAL
);
CREATE INDEX IF NOT EXISTS decisions_session ON decisions (session_id, id);
CREATE INDEX IF NOT EXISTS decisions_arm_reward ON decisions (arm, reward);
"""


class FeedbackStoreError(RuntimeError):
    """A feedback store file that is not one, or was written by a newer rl_platform."""


class Transition(NamedTuple):
    """One rewarded decision: what the request carried, the actions served, the reward.

    ``observations`` maps agent -> local observation; ``actions`` agent -> action (an
    int for a discrete space, a list of floats for a box); ``time`` is when the decision
    was served (Unix seconds).
    """

    session_id: str
    request_id: str
    arm: str
    observations: dict[str, list[float]]
    actions: dict[str, Any]
    reward: float
    time: float


class SessionOutcome(NamedTuple):
    """One session's rewarded decisions on one arm: how many, and their mean reward."""

    session_id: str
    arm: str
    decisions: int
    mean: float


class ABRouter:
    """Sticky assignment of sessions to the champion or the challenger.

    ``sha256(salt + session_id)`` read as a uniform number in [0, 1) picks the
    challenger when below ``split``, so the same session always gets the same arm and a
    new ``salt`` reshuffles everyone. Requests without a session get the champion.
    """

    def __init__(self, split: float, salt: str = "") -> None:
        if not 0.0 <= split <= 1.0:
            raise ValueError(f"A/B split must be in [0, 1] (challenger share), got {split!r}")
        self.split = float(split)
        self.salt = salt

    def arm(self, session_id: str | None) -> str:
        """The arm serving ``session_id``: :data:`CHAMPION` or :data:`CHALLENGER`."""
        if session_id is None:
            return CHAMPION
        digest = hashlib.sha256((self.salt + session_id).encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0**64
        return CHALLENGER if u < self.split else CHAMPION


def _json(value: Any, what: str) -> str:
    """``value`` as JSON text (numpy arrays and scalars become lists and numbers)."""

    def plain(obj: Any) -> Any:
        if isinstance(obj, np.ndarray | np.generic):
            return obj.tolist()
        raise TypeError(f"{type(obj).__name__} is not JSON")

    try:
        return json.dumps(value, default=plain, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be JSON (finite numbers, lists, dicts): {err}") from None


class FeedbackStore:
    """Decisions served and the rewards reported for them, in one SQLite file.

    WAL mode with a commit per write, so rows survive a crash of the server and other
    processes (``rlp finetune``, a second store on the same file) read them while it
    writes. One connection guarded by a lock, so request threads can share a store.
    Past ``max_records`` decisions the oldest are dropped.
    """

    def __init__(self, path: str | Path, max_records: int = 1_000_000) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        self.path = Path(path)
        self.max_records = int(max_records)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise FeedbackStoreError(f"{self.path}: not a feedback store: {err}") from None
        except FeedbackStoreError:
            self._db.close()
            raise

    def _check_version(self) -> None:
        with self._db:
            row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            if row[0] is None:
                self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise FeedbackStoreError(
                    f"{self.path}: feedback store schema version {row[0]}, written by a newer "
                    f"rl_platform; this one reads up to version {SCHEMA_VERSION}. Upgrade "
                    f"rl_platform or point the server at a new store file."
                )

    def record_decision(
        self,
        session_id: str,
        arm: str,
        request_id: str,
        observations: dict[str, list[float]],
        actions: dict[str, Any],
    ) -> None:
        """Store one served decision (agent -> observation, agent -> action) for ``arm``.

        Raises:
            ValueError: an unknown arm, a request id already stored, or data that is not
                JSON.
        """
        if arm not in ARMS:
            raise ValueError(f"arm must be {CHAMPION!r} or {CHALLENGER!r}, got {arm!r}")
        obs_text = _json(observations, "observations")
        act_text = _json(actions, "actions")
        with self._lock, self._db:
            try:
                cursor = self._db.execute(
                    "INSERT INTO decisions (session_id, request_id, arm, observations, actions,"
                    " time) VALUES (?, ?, ?, ?, ?, ?)",
                    (session_id, request_id, arm, obs_text, act_text, time.time()),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"request id {request_id!r} is already stored") from None
            # Ids grow by one per decision, so this keeps the newest max_records.
            self._db.execute(
                "DELETE FROM decisions WHERE id <= ?", (cursor.lastrowid - self.max_records,)
            )

    def record_feedback(self, session_id: str, reward: float, request_id: str | None = None) -> str:
        """Attach ``reward`` to the session's latest decision (or to ``request_id``).

        A second reward for the same decision replaces the first. Returns the decision's
        arm.

        Raises:
            KeyError: no decision stored for this session (or this request of it).
            ValueError: a reward that is not a finite number.
        """
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward must be a finite number, got {reward!r}")
        with self._lock, self._db:
            if request_id is None:
                row = self._db.execute(
                    "SELECT id, arm FROM decisions WHERE session_id = ? ORDER BY id DESC LIMIT 1",
                    (session_id,),
                ).fetchone()
                missing = f"no decision stored for session {session_id!r}"
            else:
                row = self._db.execute(
                    "SELECT id, arm FROM decisions WHERE request_id = ? AND session_id = ?",
                    (request_id, session_id),
                ).fetchone()
                missing = f"no decision stored for request {request_id!r} of {session_id!r}"
            if row is None:
                raise KeyError(missing)
            self._db.execute(
                "UPDATE decisions SET reward = ?, rewarded_at = ? WHERE id = ?",
                (reward, time.time(), row[0]),
            )
        return str(row[1])

    def counts(self) -> dict[str, int]:
        """Rewarded decisions per arm (both arms always present)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT arm, COUNT(*) FROM decisions WHERE reward IS NOT NULL GROUP BY arm"
            ).fetchall()
        stored = dict(rows)
        return {arm: int(stored.get(arm, 0)) for arm in ARMS}

    def rewards(
        self, arm: str, reward_range: tuple[float, float] = (-math.inf, math.inf)
    ) -> list[float]:
        """The rewards of ``arm``'s rewarded decisions within ``reward_range``, oldest first.

        Only finite numbers: whatever else a row holds (infinities, or text in a store
        written by hand or by an older version) is left out, as are values outside
        ``reward_range`` (inclusive).
        """
        low, high = reward_range
        with self._lock:
            rows = self._db.execute(
                f"SELECT reward FROM decisions WHERE arm = ? AND {_NUMERIC_REWARD}"
                " AND reward >= ? AND reward <= ? ORDER BY id",
                (arm, low, high),
            ).fetchall()
        return [float(r[0]) for r in rows if math.isfinite(r[0])]

    def session_outcomes(
        self, reward_range: tuple[float, float] = (-math.inf, math.inf)
    ) -> list[SessionOutcome]:
        """Per session and arm, the rewarded decisions' count and mean reward.

        Ordered by each session's first rewarded decision (the order sessions arrived
        in). Only finite rewards within ``reward_range`` count, as in :meth:`rewards`; a
        mean whose sum overflows float64 is infinite.
        """
        low = max(reward_range[0], -sys.float_info.max)  # leaves out stored infinities
        high = min(reward_range[1], sys.float_info.max)
        with self._lock:
            rows = self._db.execute(
                "SELECT session_id, arm, COUNT(*), TOTAL(reward) FROM decisions"
                f" WHERE {_NUMERIC_REWARD} AND reward >= ? AND reward <= ?"
                " GROUP BY session_id, arm ORDER BY MIN(id)",
                (low, high),
            ).fetchall()
        return [SessionOutcome(s, arm, int(n), float(total) / n) for s, arm, n, total in rows]

    def transitions(self, arm: str | None = None) -> Iterator[Transition]:
        """The rewarded decisions (of ``arm``, or of both) with a finite reward, oldest first."""
        last = 0
        where = f"id > ? AND {_NUMERIC_REWARD}" + (" AND arm = ?" if arm is not None else "")
        while True:
            params: tuple[Any, ...] = (last, arm) if arm is not None else (last,)
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, session_id, request_id, arm, observations, actions, reward, time"
                    f" FROM decisions WHERE {where} ORDER BY id LIMIT {_PAGE}",
                    params,
                ).fetchall()
            for row in rows:
                if not math.isfinite(row[6]):
                    continue
                yield Transition(
                    session_id=row[1],
                    request_id=row[2],
                    arm=row[3],
                    observations=json.loads(row[4]),
                    actions=json.loads(row[5]),
                    reward=row[6],
                    time=row[7],
                )
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    def __len__(self) -> int:
        """Decisions stored, rewarded or not."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]

    def close(self) -> None:
        """Close the file (every write is already committed)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's t statistic of ``mean(a) - mean(b)`` and its two-sided p-value.

    Two samples without variance give t = 0, p = 1 when their means are equal and
    t = +-inf, p = 0 otherwise. Samples whose moments overflow float64 (values near
    1e308) give NaN.

    Raises:
        ValueError: a sample with fewer than two values.
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"Welch's t-test needs two values per sample, got {len(x)} and {len(y)}")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if x.var() == 0.0 and y.var() == 0.0:
            diff = x.mean() - y.mean()
            if not math.isfinite(diff):
                return math.nan, math.nan
            return (0.0, 1.0) if diff == 0.0 else (math.copysign(math.inf, diff), 0.0)
        result = stats.ttest_ind(x, y, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _arm_summary(outcomes: list[SessionOutcome]) -> dict[str, Any]:
    """Sessions, rewarded decisions, and the session means' mean, sample std and 95% t interval.

    None where a figure is undefined or overflows float64 (rewards near 1e308). The
    interval is the fixed-sample Student-t one, a description of the arm, not the test.
    """
    from scipy import stats

    n = len(outcomes)
    summary: dict[str, Any] = {
        "sessions": n,
        "n": n,
        "decisions": sum(o.decisions for o in outcomes),
        "mean": None,
        "std": None,
        "ci95": None,
    }
    if n == 0:
        return summary
    x = np.asarray([o.mean for o in outcomes], dtype=np.float64)
    with np.errstate(all="ignore"):
        summary["mean"] = _finite_or_none(float(x.mean()))
        if n == 1:
            return summary
        std = float(x.std(ddof=1))
        half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        ci95 = [float(x.mean()) - half, float(x.mean()) + half]
    summary["std"] = _finite_or_none(std)
    summary["ci95"] = ci95 if all(math.isfinite(v) for v in ci95) else None
    return summary


def ab_report(
    store: FeedbackStore,
    alpha: float = sequential.ALPHA,
    min_sessions: int = sequential.MIN_SESSIONS,
    reward_range: tuple[float, float] = (-math.inf, math.inf),
    tau: float = sequential.TAU,
) -> dict[str, Any]:
    """Compare the arms' sessions with an always-valid test: figures and a one-line verdict.

    The unit is the session: its outcome is the mean reward of its rewarded decisions
    (decisions of one session are correlated). :func:`sequential.msprt` replays the
    sessions in the order they arrived, looking after each one from ``min_sessions`` per
    arm on, so ``p_value`` and ``difference`` (challenger - champion, its always-valid
    interval) may be read at any time; ``stopped`` says the stopping rule
    (``p_value <= alpha``) has fired, and ``winner`` who won then. Only finite rewards
    within ``reward_range`` count; ``ignored`` says, per arm, how many stored rewards
    were left out. Every number in the report is finite or None, so it is JSON.
    """
    if min_sessions < 2:
        raise ValueError(f"min_sessions must be >= 2 (a variance needs two), got {min_sessions}")
    outcomes = store.session_outcomes(reward_range)
    per_arm = {arm: [o for o in outcomes if o.arm == arm] for arm in ARMS}
    result = sequential.msprt(
        [o.mean for o in per_arm[CHAMPION]],
        [o.mean for o in per_arm[CHALLENGER]],
        alpha=alpha,
        tau=tau,
        min_sessions=min_sessions,
        order=[int(o.arm == CHALLENGER) for o in outcomes if o.arm in ARMS],
    )
    n = {arm: len(per_arm[arm]) for arm in ARMS}
    p = None if math.isnan(result.p_value) else result.p_value
    low, high = _finite_or_none(result.low), _finite_or_none(result.high)
    winner = {"a": CHAMPION, "b": CHALLENGER}.get(result.winner or "")
    stopped_at = (
        dict(zip(ARMS, result.stopped_at, strict=True)) if result.stopped_at is not None else None
    )
    significant: bool | None = None
    if min(n.values()) < min_sessions:
        verdict = (
            f"not enough data: {n[CHAMPION]}/{min_sessions} champion and "
            f"{n[CHALLENGER]}/{min_sessions} challenger sessions"
        )
    elif p is None or low is None or high is None:
        verdict = (
            "cannot compare: the rewards are too large for float64 statistics (their "
            "variance overflows); narrow the accepted reward range"
        )
    elif result.stopped:
        significant = True
        verdict = (
            f"{winner} better (always-valid p={p:.3g} <= {alpha:g}): the stopping rule fired "
            f"at {stopped_at[CHAMPION]} champion and {stopped_at[CHALLENGER]} challenger "
            f"sessions; difference in [{low:.3g}, {high:.3g}]"
        )
    else:
        significant = False
        verdict = (
            f"no significant difference yet (always-valid p={p:.3g}); difference in "
            f"[{low:.3g}, {high:.3g}]"
        )
    counted = {arm: sum(o.decisions for o in per_arm[arm]) for arm in ARMS}
    stored = store.counts()
    return {
        "unit": "session",
        "test": "mSPRT (normal mixture), always valid",
        "arms": {arm: _arm_summary(per_arm[arm]) for arm in ARMS},
        "difference": {
            "estimate": _finite_or_none(result.estimate),
            "low": low,
            "high": high,
        },
        "p_value": p,
        "significant": significant,
        "stopped": result.stopped,
        "winner": winner,
        "stopped_at": stopped_at,
        "verdict": verdict,
        "alpha": alpha,
        "tau": tau,
        "min_sessions": min_sessions,
        "min_samples": min_sessions,
        "ignored": {arm: max(stored[arm] - counted[arm], 0) for arm in ARMS},
    }
