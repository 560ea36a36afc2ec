"""Run directories on cloud storage: ``--output`` / ``storage:`` as a URI Tune supports.

With a URI (``s3://bucket/runs``, ``gs://...``, any scheme pyarrow's filesystems know,
``file://`` included) Tune writes the trial, its checkpoints and its experiment state
straight to ``<uri>/<name>/<timestamp>/`` from whichever node runs the trial, so a
multi-node run needs no shared disk. The driver keeps its own files (``config.yaml``,
``metrics.csv``, ``anomalies.jsonl``, ``summary.json``) in a local
staging copy of the run directory and uploads them beside Tune's at every checkpoint and
at the end; each checkpoint's weights-only ``policies/`` export is made from a
downloaded copy and uploaded into the checkpoint. Get a run back with the bucket's
tools (``aws s3 sync s3://bucket/runs/<name>/<timestamp> runs/...``) and evaluate or
serve the local copy.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

STAGING_ENV = "RLP_STAGING_DIR"
DRIVER_FILES = ("config.yaml", "metrics.csv", "anomalies.jsonl", "summary.json")


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
