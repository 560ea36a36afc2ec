"""``rlp export``: each module's greedy policy as a standalone ONNX or TorchScript file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from rl_platform.cli.output import console, fail


class Format(str, Enum):
    """The file formats ``rlp export`` writes."""

    onnx = "onnx"
    torchscript = "torchscript"


def export(
    checkpoint: Annotated[
        Path, typer.Argument(help="A checkpoint, or a run directory (its best checkpoint).")
    ],
    format: Annotated[  # noqa: A002 (the option's name)
        Format, typer.Option("--format", help="onnx (for onnxruntime) or torchscript (torch.jit).")
    ],
    output: Annotated[
        Path | None,
        typer.Option(help="Output directory; default CHECKPOINT/portable/<format>."),
    ] = None,
) -> None:
    r"""Export each module's greedy policy (observation -> action) as a standalone file.

    One file per module (<module_id>.onnx or <module_id>.pt) and a manifest.json (the
    agents each module serves, input and output names and shapes, the action space).
    The files load without rl_platform or Ray: onnxruntime for ONNX, torch.jit.load for
    TorchScript. Recurrent modules are refused for now. ONNX needs the export extra
    (pip install -e '.\[export]').

    [bold]Examples[/]

      rlp export runs/quickstart/20261125-101500 --format onnx --output policy/

      rlp export runs/quickstart/20261125-101500/trial/checkpoint_000004 --format torchscript
    """
    from rl_platform.serving.portable import PortableExportError, export_portable

    try:
        with console.status(f"exporting {format.value} ..."):
            out, manifest = export_portable(checkpoint, format.value, output)
    except PortableExportError as err:
        fail(str(err))
    for module_id, entry in manifest["modules"].items():
        agents = ", ".join(entry["agents"])
        console.print(f"{module_id}: {out / entry['file']}  (agents: {agents})", soft_wrap=True)
    console.print(f"manifest: {out / 'manifest.json'}", soft_wrap=True)
