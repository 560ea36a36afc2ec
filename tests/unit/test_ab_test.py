"""A/B testing without Ray: sticky routing, the feedback store, Welch's t-test, the report.

The sequential test itself is tested in test_sequential.py.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading

import numpy as np
import pytest

from rl_platform.serving.ab_test import (
    CHALLENGER,
    CHAMPION,
    ABRouter,
    FeedbackStore,
    FeedbackStoreError,
    Transition,
    ab_report,
    welch_t_test,
)

OBS = {"agent_0": [0.1, 0.2], "agent_1": [0.3, 0.4]}
ACTS = {"agent_0": 1, "agent_1": [0.5, -0.5]}


@pytest.fixture
def store(tmp_path):
    s = FeedbackStore(tmp_path / "feedback.db")
    yield s
    s.close()


# --- ABRouter ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0.1, 0.5, 0.9])
def test_router_split_proportion(split):
    router = ABRouter(split, salt="exp-1")
    share = np.mean([router.arm(f"user-{i}") == CHALLENGER for i in range(20_000)])
    assert abs(share - split) < 0.01


def test_router_is_sticky_and_defaults_to_the_champion():
    router = ABRouter(0.5)
    assert all(router.arm(f"s{i}") == ABRouter(0.5).arm(f"s{i}") for i in range(200))
    assert all(router.arm("same") == router.arm("same") for _ in range(10))
    assert router.arm(None) == CHAMPION


def test_router_split_zero_and_one():
    ids = [f"s{i}" for i in range(1000)]
    assert {ABRouter(0.0).arm(i) for i in ids} == {CHAMPION}
    assert {ABRouter(1.0).arm(i) for i in ids} == {CHALLENGER}
    assert ABRouter(1.0).arm(None) == CHAMPION


def test_router_salt_reshuffles():
    ids = [f"s{i}" for i in range(2000)]
    a = [ABRouter(0.5, salt="a").arm(i) for i in ids]
    b = [ABRouter(0.5, salt="b").arm(i) for i in ids]
    assert 0.4 < np.mean([x != y for x, y in zip(a, b)]) < 0.6


@pytest.mark.parametrize("split", [-0.1, 1.5, math.nan])
def test_router_refuses_bad_split(split):
    with pytest.raises(ValueError, match="split"):
        ABRouter(split)


# --- FeedbackStore ----------------------------------------------------------------------


def test_store_records_feedback_on_the_latest_decision(store):
    store.record_decision("s1", CHAMPION, "r1", OBS, ACTS)
    store.record_decision("s1", CHAMPION, "r2", OBS, ACTS)
    store.record_decision("s2", CHALLENGER, "r3", OBS, ACTS)
    assert len(store) == 3
    assert store.counts() == {CHAMPION: 0, CHALLENGER: 0}
    assert store.record_feedback("s1", 1.5) == CHAMPION  # goes to r2
    assert store.record_feedback("s1", -2.0, request_id="r1") == CHAMPION
    assert store.record_feedback("s2", 3) == CHALLENGER
    assert store.counts() == {CHAMPION: 2, CHALLENGER: 1}
    assert store.rewards(CHAMPION) == [-2.0, 1.5]
    assert store.rewards(CHALLENGER) == [3.0]
    store.record_feedback("s2", 4.0)  # a second reward replaces the first
    assert store.rewards(CHALLENGER) == [4.0]

    transitions = list(store.transitions())
    assert [t.request_id for t in transitions] == ["r1", "r2", "r3"]
    first = transitions[0]
    assert isinstance(first, Transition)
    assert (first.session_id, first.arm, first.reward) == ("s1", CHAMPION, -2.0)
    assert first.observations == OBS and first.actions == ACTS
    assert first.time > 0
    assert [t.request_id for t in store.transitions(CHALLENGER)] == ["r3"]


def test_store_transitions_skip_unrewarded_and_page(tmp_path):
    with FeedbackStore(tmp_path / "f.db") as s:
        for i in range(2500):
            s.record_decision(f"s{i}", CHAMPION, f"r{i}", OBS, ACTS)
            if i % 2:
                s.record_feedback(f"s{i}", float(i))
        rewards = [t.reward for t in s.transitions(CHAMPION)]
    assert rewards == [float(i) for i in range(1, 2500, 2)]


def test_store_refuses_unknown_sessions_and_bad_rewards(store):
    store.record_decision("s1", CHAMPION, "r1", OBS, ACTS)
    with pytest.raises(KeyError, match="nobody"):
        store.record_feedback("nobody", 1.0)
    with pytest.raises(KeyError, match="r9"):
        store.record_feedback("s1", 1.0, request_id="r9")
    store.record_decision("s2", CHAMPION, "r2", OBS, ACTS)
    with pytest.raises(KeyError):  # the request belongs to another session
        store.record_feedback("s1", 1.0, request_id="r2")
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            store.record_feedback("s1", bad)
    with pytest.raises(ValueError, match="arm"):
        store.record_decision("s1", "other", "r3", OBS, ACTS)
    with pytest.raises(ValueError, match="already stored"):
        store.record_decision("s1", CHAMPION, "r1", OBS, ACTS)
    assert store.counts() == {CHAMPION: 0, CHALLENGER: 0}


def test_store_is_durable_and_shared(tmp_path):
    path = tmp_path / "f.db"
    first = FeedbackStore(path)
    first.record_decision("s1", CHALLENGER, "r1", OBS, ACTS)
    first.record_feedback("s1", 2.0)
    second = FeedbackStore(path)  # e.g. `rlp finetune` while the server writes
    assert second.rewards(CHALLENGER) == [2.0]
    first.record_decision("s2", CHAMPION, "r2", OBS, ACTS)
    assert len(second) == 2
    second.record_feedback("s2", 1.0)
    assert first.counts() == {CHAMPION: 1, CHALLENGER: 1}
    first.close()
    second.close()
    with FeedbackStore(path) as reopened:
        assert len(reopened) == 2
        assert [t.reward for t in reopened.transitions()] == [2.0, 1.0]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_keeps_the_newest_max_records(tmp_path):
    with FeedbackStore(tmp_path / "f.db", max_records=100) as s:
        for i in range(250):
            s.record_decision(f"s{i}", CHAMPION, f"r{i}", OBS, ACTS)
            s.record_feedback(f"s{i}", float(i))
        assert len(s) == 100
        assert s.rewards(CHAMPION) == [float(i) for i in range(150, 250)]
        with pytest.raises(KeyError):
            s.record_feedback("s0", 1.0)


def test_store_is_thread_safe(store):
    def write(k):
        for i in range(200):
            store.record_decision(
                f"t{k}-{i}", CHALLENGER if i % 2 else CHAMPION, f"{k}.{i}", OBS, ACTS
            )
            store.record_feedback(f"t{k}-{i}", 1.0)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store) == 1600
    assert store.counts() == {CHAMPION: 800, CHALLENGER: 800}


def test_store_keeps_json_only(tmp_path):
    path = tmp_path / "f.db"
    with FeedbackStore(path) as s:
        numpy_acts = {"agent_0": np.int64(3), "agent_1": np.array([0.25, -1.0], np.float32)}
        s.record_decision("s1", CHAMPION, "r1", OBS, numpy_acts)
        with pytest.raises(ValueError, match="JSON"):
            s.record_decision("s2", CHAMPION, "r2", OBS, {"agent_0": object()})
        with pytest.raises(ValueError, match="JSON"):
            s.record_decision("s2", CHAMPION, "r2", {"agent_0": [math.nan]}, ACTS)
    rows = sqlite3.connect(path).execute("SELECT observations, actions FROM decisions").fetchall()
    assert len(rows) == 1
    obs_text, act_text = rows[0]
    assert isinstance(obs_text, str) and json.loads(obs_text) == OBS
    assert json.loads(act_text) == {"agent_0": 3, "agent_1": [0.25, -1.0]}


def test_store_refuses_a_newer_schema_and_foreign_files(tmp_path):
    path = tmp_path / "f.db"
    FeedbackStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(FeedbackStoreError, match="version 99.*newer"):
        FeedbackStore(path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(FeedbackStoreError, match="not a feedback store"):
        FeedbackStore(junk)


# --- Welch's t-test ---------------------------------------------------------------------


def test_welch_matches_a_hand_computed_example():
    # means 3 and 6, variances 2.5 and 10, n = 5: t = -3 / sqrt(0.5 + 2) = -1.8974,
    # Welch-Satterthwaite df = 2.5^2 / (0.5^2 / 4 + 2^2 / 4) = 5.882; the two-sided p
    # is 0.107531 (numerical integration of the t density).
    t, p = welch_t_test([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert t == pytest.approx(-3 / math.sqrt(2.5))
    assert p == pytest.approx(0.107531, abs=1e-6)
    t2, p2 = welch_t_test([2, 4, 6, 8, 10], [1, 2, 3, 4, 5])
    assert (t2, p2) == pytest.approx((-t, p))


def test_welch_extremes():
    x = [0.3, 1.2, -0.4, 2.2, 0.9]
    assert welch_t_test(x, x) == pytest.approx((0.0, 1.0))
    rng = np.random.default_rng(0)
    t, p = welch_t_test(rng.normal(0, 1, 200), rng.normal(3, 1, 200))
    assert t < 0 and p < 1e-6
    assert welch_t_test([1, 1, 1], [1, 1]) == (0.0, 1.0)
    assert welch_t_test([2, 2, 2], [1, 1]) == (math.inf, 0.0)
    with pytest.raises(ValueError, match="two values"):
        welch_t_test([1.0], [1.0, 2.0])


# --- ab_report --------------------------------------------------------------------------


def fill(store, champion, challenger):
    for arm, rewards in ((CHAMPION, champion), (CHALLENGER, challenger)):
        for i, r in enumerate(rewards):
            store.record_decision(f"{arm}-{i}", arm, f"{arm}-{i}", OBS, ACTS)
            store.record_feedback(f"{arm}-{i}", float(r))


def test_report_waits_for_min_sessions(store):
    rng = np.random.default_rng(1)
    fill(store, rng.normal(0, 1, 12), rng.normal(5, 1, 3))
    report = ab_report(store)
    assert report["significant"] is None and report["stopped"] is False
    assert report["verdict"].startswith("not enough data")
    assert "12/30" in report["verdict"] and "3/30" in report["verdict"]
    assert report["arms"][CHAMPION]["sessions"] == report["arms"][CHAMPION]["n"] == 12
    assert report["p_value"] == 1.0  # no look yet: no evidence
    assert report["difference"]["low"] is None and report["difference"]["estimate"] > 4
    json.dumps(report, allow_nan=False)


def test_report_with_no_data(store):
    report = ab_report(store)
    assert report["arms"][CHAMPION] == {
        "sessions": 0,
        "n": 0,
        "decisions": 0,
        "mean": None,
        "std": None,
        "ci95": None,
    }
    assert report["difference"] == {"estimate": None, "low": None, "high": None}
    assert report["significant"] is None and report["winner"] is None
    assert report["verdict"].startswith("not enough data: 0/30")
    assert "t" not in report  # no t-test any more


def test_report_finds_a_better_challenger(store):
    rng = np.random.default_rng(2)
    fill(store, rng.normal(0.0, 1.0, 100), rng.normal(1.0, 1.0, 100))
    report = ab_report(store)
    assert report["significant"] is True and report["stopped"] is True
    assert report["winner"] == CHALLENGER
    assert report["verdict"].startswith("challenger better (always-valid p=")
    assert report["p_value"] <= 0.05
    difference = report["difference"]
    assert 0 < difference["low"] < difference["estimate"] < difference["high"]
    assert difference["low"] < 1.0 < difference["high"]  # the true difference
    # fill() sends every champion session first: the first look is at 100 + 30.
    assert report["stopped_at"][CHAMPION] == 100 and report["stopped_at"][CHALLENGER] >= 30
    arm = report["arms"][CHALLENGER]
    assert arm["ci95"][0] < arm["mean"] < arm["ci95"][1]
    assert (report["alpha"], report["min_sessions"], report["unit"]) == (0.05, 30, "session")
    json.dumps(report, allow_nan=False)


@pytest.mark.parametrize("rewards", [([], []), ([0.0] * 40, [1.0, 2.0] * 20), ([1e308] * 40,) * 2])
def test_report_fits_the_served_schema(tmp_path, rewards):
    """GET /v1/ab answers the report plus counts, split and store as ABReport."""
    from rl_platform.serving.schemas import ABReport

    with FeedbackStore(tmp_path / "f.db") as s:
        fill(s, *rewards)
        report = ab_report(s)
        served = {**report, "counts": s.counts(), "split": 0.5, "store": str(s.path)}
    model = ABReport.model_validate(served)
    assert model.model_dump(exclude_unset=True) == served


def test_report_equal_arms_are_mostly_not_significant(tmp_path):
    rng = np.random.default_rng(3)
    significant = []
    for k in range(40):
        with FeedbackStore(tmp_path / f"{k}.db") as s:
            fill(s, rng.normal(0, 1, 40), rng.normal(0, 1, 40))
            report = ab_report(s)
        significant.append(report["significant"])
        if not report["significant"]:
            assert report["verdict"].startswith("no significant difference yet (always-valid p=")
            low, high = report["difference"]["low"], report["difference"]["high"]
            assert low < 0 < high
    assert sum(significant) <= 6  # at most ~5% expected at alpha = 0.05


def test_report_unit_is_the_session_not_the_decision(store):
    """Many decisions of one session count once: its mean reward is one outcome."""
    rng = np.random.default_rng(4)
    request = 0
    for arm, shift in ((CHAMPION, 0.0), (CHALLENGER, 0.0)):
        for i in range(40):
            session_effect = rng.normal(0.0, 1.0) + shift  # decisions within a session correlate
            for _ in range(20):
                store.record_decision(f"{arm}-{i}", arm, f"r{request}", OBS, ACTS)
                store.record_feedback(f"{arm}-{i}", session_effect + rng.normal(0.0, 0.1))
                request += 1
    report = ab_report(store)
    assert report["arms"][CHAMPION]["sessions"] == 40
    assert report["arms"][CHAMPION]["decisions"] == 800
    # Per-session means: their std is the session effect's (about 1), not 1/sqrt(20) of it.
    assert 0.7 < report["arms"][CHAMPION]["std"] < 1.4
    outcomes = store.session_outcomes()
    assert [o.decisions for o in outcomes] == [20] * 80
    assert outcomes[0].session_id == f"{CHAMPION}-0" and outcomes[-1].arm == CHALLENGER


def test_report_refuses_bad_settings(store):
    with pytest.raises(ValueError, match="alpha"):
        ab_report(store, alpha=1.5)
    with pytest.raises(ValueError, match="min_sessions"):
        ab_report(store, min_sessions=1)
    with pytest.raises(ValueError, match="tau"):
        ab_report(store, tau=0.0)


# --- whatever an older version or a hand-edited store holds -----------------------------


def store_rewards(path, rewards: dict[str, list]) -> None:
    """Decisions with these stored rewards, written straight into the sqlite file."""
    with FeedbackStore(path) as s:
        for arm, values in rewards.items():
            for i, _ in enumerate(values):
                s.record_decision(f"{arm}-{i}", arm, f"{arm}-r{i}", OBS, ACTS)
    db = sqlite3.connect(path)
    with db:
        for arm, values in rewards.items():
            for i, value in enumerate(values):
                db.execute(
                    "UPDATE decisions SET reward = ? WHERE request_id = ?", (value, f"{arm}-r{i}")
                )
    db.close()


JUNK = [math.inf, -math.inf, 1e308, -1e308, "a lot", b"\x00"]


def test_report_leaves_out_stored_junk_and_stays_json(tmp_path):
    path = tmp_path / "old.db"
    good = {
        CHAMPION: [1.0 + 0.1 * i for i in range(40)],
        CHALLENGER: [2.0 + 0.1 * i for i in range(40)],
    }
    store_rewards(path, {arm: values + JUNK for arm, values in good.items()})
    with FeedbackStore(path) as s:
        assert s.counts() == {CHAMPION: 46, CHALLENGER: 46}  # rewarded rows, junk included
        assert s.rewards(CHAMPION) == good[CHAMPION] + [1e308, -1e308]  # finite numbers
        assert s.rewards(CHAMPION, (-1e9, 1e9)) == good[CHAMPION]
        assert len(list(s.transitions())) == 84  # infinities and text are no transitions
        report = ab_report(s, reward_range=(-1e9, 1e9))
        s_outcomes = s.session_outcomes((-1e9, 1e9))
    json.dumps(report, allow_nan=False)
    assert report["ignored"] == {CHAMPION: 6, CHALLENGER: 6}
    assert report["arms"][CHAMPION]["sessions"] == 40
    assert report["arms"][CHAMPION]["mean"] == pytest.approx(np.mean(good[CHAMPION]))
    assert report["significant"] is True and report["verdict"].startswith("challenger better")
    assert [o.mean for o in s_outcomes if o.arm == CHAMPION] == good[CHAMPION]


def test_report_survives_rewards_that_overflow_float64(tmp_path):
    """Without a range, 1e308 counts: every figure that overflows is None, never inf/NaN."""
    path = tmp_path / "huge.db"
    store_rewards(path, {CHAMPION: [1e308, 1e308, -1e308] * 12, CHALLENGER: [1e308] * 31 + [1.0]})
    with FeedbackStore(path) as s:
        report = ab_report(s)
    json.dumps(report, allow_nan=False)
    assert report["p_value"] is None and report["significant"] is None
    assert report["difference"]["low"] is None and report["stopped"] is False
    assert report["verdict"].startswith("cannot compare")
    for arm in (CHAMPION, CHALLENGER):
        summary = report["arms"][arm]
        assert summary["sessions"] == 36 if arm == CHAMPION else 32
        assert summary["std"] is None and summary["ci95"] is None


def test_welch_of_overflowing_samples_is_nan_not_an_error():
    t, p = welch_t_test([1e308, 1e308], [-1e308, -1e308])
    assert math.isnan(t) and math.isnan(p)


def test_decisions_of_one_session_are_not_independent_samples():
    """Why the session is the unit: correlated decisions make a decision-level test lie."""
    rng = np.random.default_rng(5)
    by_decision, by_session = [], []
    for _ in range(200):  # A/A tests: 40 sessions per arm, 20 decisions each
        session = rng.normal(0.0, 1.0, (2, 40, 1))  # what a session shares (user, episode)
        rewards = session + rng.normal(0.0, 0.5, (2, 40, 20))
        by_decision.append(welch_t_test(rewards[1].ravel(), rewards[0].ravel())[1] < 0.05)
        by_session.append(welch_t_test(rewards[1].mean(1), rewards[0].mean(1))[1] < 0.05)
    assert np.mean(by_decision) > 0.4  # "significant" in ~60% of A/A tests
    assert np.mean(by_session) < 0.1
