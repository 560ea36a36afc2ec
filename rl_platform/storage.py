"""Run directories on cloud storage: ``--output`` / ``storage:`` as a URI Tune supports.

With a URI (``s3://bucket/runs``, ``gs://...``, any scheme pyarrow's filesystems know,
``file://`` included) Tune writes the trial, its checkpoints and its experiment state
straight to ``<uri>/<name>/<timestamp>/`` from whichever node runs the trial, so a
multi-node run needs no shared disk. The driver keeps its own files (``config.yaml``,
``metrics.csv``, ``anomalies.jsonl``, ``summary.json``) in a local
staging copy of the run directory and uploads them beside Tune's at every checkpoint and
at the end; each checkpoint's weights-only ``policies/`` export is made from a
downloaded copy and uploaded into the checkpoint.

``rlp evaluate`` and ``rlp serve`` take such a run (or one of its checkpoints) by its URI:
:func:`fetched` downloads only data (the driver's files and each checkpoint's
``policies/`` export, never RLlib's pickled state) to a private temp dir, deleted after;
the policies then travel to a cluster's workers and replicas as bytes, so they need no
access to the bucket. ``aws s3 sync`` or the like gets a whole run back.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from rl_platform.runs import CONFIG_FILE, TRIAL_DIR

STAGING_ENV = "RLP_STAGING_DIR"
DRIVER_FILES = ("config.yaml", "metrics.csv", "anomalies.jsonl", "summary.json")


EXPORT_DIR = "policies"  # rl_platform.checkpoints.EXPORT_DIR (not imported: torch-free here)
RUN_PARENTS = 3  # a checkpoint's run directory is at most this many folders above it


class StorageError(ValueError):
    """A storage URI that names no run or checkpoint, or cannot be read; says which."""


def is_uri(target: str | Path | None) -> bool:
    """Whether ``target`` names cloud storage (``scheme://...``) rather than a path."""
    return target is not None and "://" in str(target)


def staging_root() -> Path:
    """Where local staging copies of remote run directories live (``$RLP_STAGING_DIR``)."""
    return Path(os.environ.get(STAGING_ENV) or Path(tempfile.gettempdir()) / "rlp-staging")


def join(uri: str, *parts: str) -> str:
    """``uri/part/...`` without doubled slashes."""
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def upload_driver_files(run_dir: Path, uri: str) -> None:
    """Copy the driver's files of a staged run directory to its URI."""
    import pyarrow.fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(uri)
    filesystem.create_dir(root, recursive=True)
    local = pafs.LocalFileSystem()
    for name in DRIVER_FILES:
        path = run_dir / name
        if path.is_file():
            pafs.copy_files(
                str(path),
                f"{root}/{name}",
                source_filesystem=local,
                destination_filesystem=filesystem,
            )


def checkpoint_uri(checkpoint: Any) -> str:
    """A Tune/Train ``Checkpoint``'s location as a URI (``file://`` for local ones)."""
    scheme = checkpoint.filesystem.type_name
    scheme = "file" if scheme == "local" else scheme
    return f"{scheme}://{checkpoint.path}"


def export_remote_checkpoint(checkpoint: Any, run_dir: Path) -> None:
    """Write a remote checkpoint's ``policies/`` export: download, export, upload."""
    import pyarrow.fs as pafs

    from rl_platform.checkpoints import EXPORT_DIR, export_for_run

    with tempfile.TemporaryDirectory(prefix="rlp-export-") as scratch:
        local = Path(checkpoint.to_directory(scratch))
        export_for_run(local, run_dir)
        checkpoint.filesystem.create_dir(f"{checkpoint.path}/{EXPORT_DIR}", recursive=True)
        pafs.copy_files(
            str(local / EXPORT_DIR),
            f"{checkpoint.path}/{EXPORT_DIR}",
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=checkpoint.filesystem,
        )


def remote_name(uri: str) -> str:
    """The last folder name of a URI (a run's timestamp, a checkpoint's name)."""
    return PurePosixPath(uri.split("://", 1)[-1].rstrip("/")).name or "remote"


@contextmanager
def fetched(target: str | Path) -> Iterator[Path]:
    """A run directory or checkpoint, local: a path as it is, a URI downloaded.

    From a URI (``s3://``, ``gs://``, ``file://``, any scheme pyarrow knows) only data is
    fetched into a private temp dir, removed on exit: the run's driver files
    (``config.yaml``, ``metrics.csv``, ``summary.json``...) and the ``policies/`` export
    of each of its checkpoints; a checkpoint URI brings its run's files too when it lies
    inside a run. The local copy keeps the run's layout, so ``summary.json``'s best
    checkpoint and the kept checkpoints resolve in it.

    Raises:
        StorageError: the URI cannot be opened, names nothing, or names neither a run
            directory (``config.yaml``) nor a checkpoint (``policies/manifest.json``).
    """
    if not is_uri(target):
        yield Path(target)
        return
    with tempfile.TemporaryDirectory(prefix="rlp-fetch-") as scratch:
        yield download_run(str(target), Path(scratch))


def download_run(uri: str, into: Path) -> Path:
    """Download a run's or checkpoint's data (see :func:`fetched`) under ``into``.

    Returns:
        The local run directory, or the local checkpoint for a checkpoint URI.
    """
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
        root = root.rstrip("/") or "/"

        def kind(path: str) -> pafs.FileType:
            return filesystem.get_file_info(path).type

        if kind(root) != pafs.FileType.Directory:
            raise StorageError(f"{uri}: no such run directory or checkpoint")
        run, inside = _run_of(root, kind)
        if run is None and kind(f"{root}/{EXPORT_DIR}/manifest.json") != pafs.FileType.File:
            raise StorageError(
                f"{uri}: neither a run directory ({CONFIG_FILE}) nor a checkpoint "
                f"({EXPORT_DIR}/manifest.json); give a run made by rlp train, or one of its "
                "checkpoints"
            )
        local = into / (PurePosixPath(run).name if run else PurePosixPath(root).name)
        local.mkdir(parents=True)
        if run is None:  # a bare checkpoint: its export only
            _copy_dir(filesystem, f"{root}/{EXPORT_DIR}", local / EXPORT_DIR)
            return local
        for name in DRIVER_FILES:
            if kind(f"{run}/{name}") == pafs.FileType.File:
                _copy_file(filesystem, f"{run}/{name}", local / name)
        selector = pafs.FileSelector(f"{run}/{TRIAL_DIR}", allow_not_found=True)
        for info in filesystem.get_file_info(selector):
            export = f"{info.path}/{EXPORT_DIR}"
            if info.base_name.startswith("checkpoint_") and kind(export) == pafs.FileType.Directory:
                _copy_dir(filesystem, export, local / TRIAL_DIR / info.base_name / EXPORT_DIR)
        return local / inside if inside else local
    except (OSError, pa.ArrowException) as err:  # a bad scheme, no access, a lost connection
        raise StorageError(f"{uri}: cannot read it: {err}") from None


def _run_of(root: str, kind: Any) -> tuple[str | None, str]:
    """(the run directory holding ``root`` or None, ``root`` relative to it)."""
    import pyarrow.fs as pafs

    path = PurePosixPath(root)
    for up, folder in enumerate([path, *list(path.parents)[:RUN_PARENTS]]):
        if kind(f"{str(folder).rstrip('/')}/{CONFIG_FILE}") == pafs.FileType.File:
            return str(folder), str(path.relative_to(folder)) if up else ""
    return None, ""


def _copy_file(filesystem: Any, source: str, target: Path) -> None:
    import pyarrow.fs as pafs

    target.parent.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(
        source,
        str(target),
        source_filesystem=filesystem,
        destination_filesystem=pafs.LocalFileSystem(),
    )


def _copy_dir(filesystem: Any, source: str, target: Path) -> None:
    """The plain files directly in ``source`` (an export is one flat folder)."""
    import pyarrow.fs as pafs

    for info in filesystem.get_file_info(pafs.FileSelector(source)):
        if info.type == pafs.FileType.File and not info.base_name.startswith("."):
            _copy_file(filesystem, info.path, target / info.base_name)
