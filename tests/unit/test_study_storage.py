"""A sweep's Optuna study storage: journal by default, RDB by URL, safe when opened at once."""

import json
import multiprocessing
import os
import shutil
import sqlite3
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc

from rl_platform.tuning import storage as study_storage
from rl_platform.tuning.storage import (
    JOURNAL_FILE,
    RECORD_FILE,
    StudyStorage,
    StudyStorageError,
    load_study,
    open_rdb,
    record,
    recorded,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_settings_name_a_journal_file_or_an_rdb_with_relative_paths_made_absolute(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert StudyStorage.journal_in(Path("sweep")) == StudyStorage(
        "journal", str(tmp_path / "sweep" / JOURNAL_FILE)
    )
    assert StudyStorage.from_setting("studies/shared.journal") == StudyStorage(
        "journal", str(tmp_path / "studies" / "shared.journal")
    )
    assert StudyStorage.from_setting("sqlite:///s.db") == StudyStorage(
        "rdb", f"sqlite:///{tmp_path / 's.db'}"
    )
    assert StudyStorage.from_setting("sqlite:////abs/s.db").location == "sqlite:////abs/s.db"
    server = StudyStorage.from_setting("postgresql://me:secret@db.example:5432/studies")
    assert server.kind == "rdb" and server.location.endswith("@db.example:5432/studies")
    assert "secret" not in server.display and "db.example" in server.display


def test_a_sweep_records_its_storage_and_finds_it_again_after_a_move(tmp_path):
    sweep_dir = tmp_path / "sweep-1"
    sweep_dir.mkdir()
    storage = StudyStorage.journal_in(sweep_dir)
    optuna.create_study(study_name="s1", storage=storage.open()).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2
    )
    record(sweep_dir, storage, "s1")
    assert json.loads((sweep_dir / RECORD_FILE).read_text()) == {
        "kind": "journal",
        "location": JOURNAL_FILE,
        "study_name": "s1",
    }
    moved = tmp_path / "elsewhere" / "sweep-1"
    shutil.move(str(sweep_dir), moved)
    assert recorded(moved) == (StudyStorage.journal_in(moved), "s1")
    assert len(load_study(moved).trials) == 2

    rdb = StudyStorage.from_setting(f"sqlite:///{tmp_path / 'shared.db'}")
    record(moved, rdb, "s2")
    assert recorded(moved) == (rdb, "s2")


def test_a_sweep_without_a_record_is_read_from_its_sqlite_file_as_before(tmp_path):
    (tmp_path / "sweep.yaml").write_text("tune: {storage: null, study_name: old}\n")
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="old", storage=url)
    assert recorded(tmp_path) == (StudyStorage("rdb", url), None)
    assert load_study(tmp_path, "old").study_name == "old"


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"kind": "redis", "location": "x", "study_name": "s"}', '{"kind": "rdb"}'],
)
def test_a_corrupt_record_is_refused_by_name(tmp_path, content):
    (tmp_path / RECORD_FILE).write_text(content)
    with pytest.raises(StudyStorageError, match=RECORD_FILE):
        recorded(tmp_path)


def test_a_storage_that_cannot_be_opened_says_where_and_why(tmp_path):
    with pytest.raises(StudyStorageError, match="cannot open nonsense://x as an Optuna rdb"):
        StudyStorage.from_setting("nonsense://x").open()
    (tmp_path / "file").write_text("")
    with pytest.raises(StudyStorageError, match="journal storage"):
        StudyStorage("journal", str(tmp_path / "file" / "optuna.journal")).open()


def test_open_returns_one_storage_object_however_often_it_is_called(tmp_path):
    storage = StudyStorage.journal_in(tmp_path)
    assert storage.open() is storage.open()


# --------------------------------------------------------------------------- the schema race


def schema_race_error() -> sqlalchemy.exc.IntegrityError:
    """What the loser of two connections creating one SQLite schema raised in CI."""
    return sqlalchemy.exc.IntegrityError(
        "INSERT INTO alembic_version (version_num) VALUES (?)",
        ("v3.2.0.a",),
        sqlite3.IntegrityError("UNIQUE constraint failed: alembic_version.version_num"),
    )


def test_losing_the_schema_race_is_retried_and_other_errors_are_not(tmp_path, monkeypatch):
    real = optuna.storages.RDBStorage
    calls = []

    class Racing(real):
        def __init__(self, url, *args, **kwargs):
            calls.append(url)
            if len(calls) == 1:  # another process stamped the schema first
                real(url)
                raise schema_race_error()
            super().__init__(url, *args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", Racing)
    monkeypatch.setattr(study_storage, "SCHEMA_RETRY_S", 0.01)
    url = f"sqlite:///{tmp_path / 's.db'}"
    opened = open_rdb(url)
    assert len(calls) == 2
    optuna.create_study(study_name="s", storage=opened)

    class Broken(real):
        def __init__(self, url, *args, **kwargs):
            calls.append(url)
            raise sqlalchemy.exc.OperationalError("connect", {}, Exception("unable to open"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", Broken)
    calls.clear()
    with pytest.raises(sqlalchemy.exc.OperationalError):
        open_rdb(url)
    assert len(calls) == 1  # not a race: no retry


def _open_at_once(kind, location, barrier, queue):
    try:
        storage = StudyStorage(kind, location)
        barrier.wait()  # every process creates the storage (an RDB: its schema) together
        study = optuna.create_study(study_name=f"s{os.getpid()}", storage=storage.open())
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        queue.put("ok")
    except Exception as err:  # noqa: BLE001 (reported to the test)
        queue.put(f"{type(err).__name__}: {err}")


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_processes_opening_one_new_storage_at_the_same_moment_all_succeed(tmp_path, kind):
    location = (
        str(tmp_path / JOURNAL_FILE) if kind == "journal" else f"sqlite:///{tmp_path / 's.db'}"
    )
    context = multiprocessing.get_context("fork")
    count = 6
    barrier, queue = context.Barrier(count), context.Queue()
    kind = "journal" if kind == "journal" else "rdb"
    args = (kind, location, barrier, queue)
    procs = [context.Process(target=_open_at_once, args=args) for _ in range(count)]
    for proc in procs:
        proc.start()
    outcomes = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert outcomes == ["ok"] * count
    storage = StudyStorage(kind, location).open()
    names = [s.study_name for s in storage.get_all_studies()]
    assert len(names) == count
    for name in names:
        assert len(optuna.load_study(study_name=name, storage=storage).trials) == 3
