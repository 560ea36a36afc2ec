"""Where a sweep keeps its Optuna study: a journal file by default, or an RDB.

``tune.storage`` chooses Optuna's journal file storage (``optuna.journal`` in the sweep
directory, or at a given path) or an RDB URL (``RDBStorage``, its schema created once by
:func:`open_rdb`). A sweep records its storage in ``study.json`` (:func:`record`), and
whatever opens the study later goes through :func:`recorded` and
:meth:`StudyStorage.open`, so it finds the storage the sweep was created with. Only
Optuna's public storage API is used. Which to choose: docs/sweeps.md (Study storage).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rl_platform.runs import SWEEP_FILE

if TYPE_CHECKING:
    import optuna

JOURNAL_FILE = "optuna.journal"
RECORD_FILE = "study.json"
# Sweeps made before the journal default kept their study in this SQLite file.
LEGACY_SQLITE_FILE = "optuna.db"
SCHEMA_ATTEMPTS = 6
SCHEMA_RETRY_S = 0.2  # first back-off; doubles at each retry


class StudyStorageError(ValueError):
    """A study storage that cannot be opened, or a sweep without a readable record of it."""


@dataclass
class StudyStorage:
    """An Optuna study storage: a journal file (``location`` its path) or an RDB URL.

    :meth:`open` makes the Optuna storage object once; later calls return the same one.
    """

    kind: Literal["journal", "rdb"]
    location: str
    _opened: Any = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def journal_in(cls, sweep_dir: Path) -> StudyStorage:
        """The default: ``optuna.journal`` in the sweep directory."""
        return cls("journal", str((Path(sweep_dir) / JOURNAL_FILE).resolve()))

    @classmethod
    def from_setting(cls, setting: str) -> StudyStorage:
        """The storage a ``tune.storage`` value names: a journal file path or an RDB URL.

        Relative paths (a journal file, ``sqlite:///relative.db``) are made absolute, so
        a resume from another working directory finds the same study.
        """
        if "://" not in setting:
            return cls("journal", str(Path(setting).expanduser().resolve()))
        prefix = "sqlite:///"
        path = setting[len(prefix) :]
        if setting.startswith(prefix) and path and not path.startswith("/"):
            if path != ":memory:":
                return cls("rdb", prefix + str(Path(path).resolve()))
        return cls("rdb", setting)

    def open(self) -> optuna.storages.BaseStorage:
        """The Optuna storage object, made at the first call (an RDB's schema with it).

        Raises:
            StudyStorageError: it cannot be opened (bad URL, unreachable server, no driver).
        """
        import optuna

        if self._opened is not None:
            return self._opened
        try:
            if self.kind == "journal":
                from optuna.storages.journal import JournalFileBackend

                Path(self.location).parent.mkdir(parents=True, exist_ok=True)
                self._opened = optuna.storages.JournalStorage(JournalFileBackend(self.location))
            else:
                self._opened = open_rdb(self.location)
        except Exception as err:  # noqa: BLE001 (any failure to open it is the location's)
            raise StudyStorageError(
                f"cannot open {self.display} as an Optuna {self.kind} storage: "
                f"{type(err).__name__}: {err}"
            ) from None
        return self._opened

    @property
    def display(self) -> str:
        """The location to show people and logs (an RDB URL without its password)."""
        if self.kind == "journal":
            return self.location
        try:
            from sqlalchemy.engine import make_url

            return make_url(self.location).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 (not a URL SQLAlchemy parses: shown as written)
            return self.location

    def to_json(self, sweep_dir: Path) -> dict[str, str]:
        """The record's fields; a journal inside the sweep directory is stored relative."""
        location = self.location
        if self.kind == "journal":
            try:
                location = str(Path(location).relative_to(Path(sweep_dir).resolve()))
            except ValueError:
                pass
        return {"kind": self.kind, "location": location}


def open_rdb(url: str, attempts: int = SCHEMA_ATTEMPTS) -> optuna.storages.RDBStorage:
    """Open an Optuna RDB storage, creating its schema if needed, safe against a race.

    Two processes creating the same schema at once (two sweeps starting on one SQLite
    file, a driver and a reader) collide on its version rows or tables:
    ``IntegrityError: UNIQUE constraint failed: alembic_version.version_num``, or ``table
    ... already exists``. The loser tries again, and then finds the schema made.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: any other failure, or the race lasting ``attempts``.
    """
    import optuna

    delay = SCHEMA_RETRY_S
    for attempt in range(1, attempts + 1):
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as err:
            if attempt == attempts or not is_schema_race(err):
                raise
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def is_schema_race(err: BaseException) -> bool:
    """Whether ``err`` is a lost race to create an Optuna RDB schema (worth a retry).

    Creating the schema only creates tables and inserts its one version row and alembic
    stamp, so an integrity error there means another process inserted them first; a table
    that "already exists" (or a locked SQLite file) means it was creating them too.
    """
    from sqlalchemy import exc

    if isinstance(err, exc.IntegrityError):
        return True
    if isinstance(err, (exc.OperationalError, exc.ProgrammingError)):
        text = str(err).lower()
        return "already exists" in text or "database is locked" in text
    return False


def record(sweep_dir: Path, storage: StudyStorage, study_name: str) -> None:
    """Write ``study.json``: which storage and study this sweep uses."""
    data = {**storage.to_json(sweep_dir), "study_name": study_name}
    (Path(sweep_dir) / RECORD_FILE).write_text(json.dumps(data, indent=2) + "\n")


def recorded(sweep_dir: Path) -> tuple[StudyStorage, str | None]:
    """The storage and study name a sweep was created with (from ``study.json``).

    A sweep made before ``study.json`` existed used ``tune.storage`` from its
    ``sweep.yaml``, else ``optuna.db`` (SQLite) in the sweep directory; the study name
    is then None (read it from ``sweep.yaml``).

    Raises:
        StudyStorageError: ``study.json`` is there but is not a record of a storage.
    """
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / RECORD_FILE
    if not path.is_file():
        return _legacy(sweep_dir), None
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StudyStorageError(f"{path}: not a readable JSON record: {err}") from None
    if (
        not isinstance(data, dict)
        or data.get("kind") not in ("journal", "rdb")
        or not isinstance(data.get("location"), str)
        or not data["location"]
        or not isinstance(data.get("study_name"), str)
    ):
        raise StudyStorageError(
            f"{path}: expected {{kind: journal or rdb, location: a path or URL, study_name: "
            f"text}}, got {str(data)[:200]}"
        )
    location = data["location"]
    if data["kind"] == "journal":
        location = str((sweep_dir / location).resolve())  # an absolute path stays as it is
    return StudyStorage(data["kind"], location), data["study_name"]


def _legacy(sweep_dir: Path) -> StudyStorage:
    import yaml

    setting = None
    try:
        sweep = yaml.safe_load((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))
        setting = sweep["tune"]["storage"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        pass
    if isinstance(setting, str) and setting:
        return StudyStorage.from_setting(setting)
    return StudyStorage("rdb", f"sqlite:///{(sweep_dir / LEGACY_SQLITE_FILE).resolve()}")


def load_study(sweep_dir: Path, study_name: str | None = None) -> optuna.Study:
    """A sweep's Optuna study, from the storage it recorded (read-only use: tables, tests).

    Raises:
        StudyStorageError: the storage cannot be opened or has no such study.
    """
    import optuna

    storage, name = recorded(sweep_dir)
    name = study_name or name
    if name is None:
        raise StudyStorageError(f"{sweep_dir}: no study name recorded; give study_name.")
    opened = storage.open()
    try:
        return optuna.load_study(study_name=name, storage=opened)
    except KeyError:
        raise StudyStorageError(f"{sweep_dir}: no study {name!r} in {storage.display}.") from None
