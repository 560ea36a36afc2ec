"""``rlp schema``: the JSON Schema of the experiment YAML."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rl_platform.cli.output import console
from rl_platform.config import experiment_json_schema


def schema(
    output: Annotated[Path | None, typer.Option(help="Write to this file, not stdout.")] = None,
) -> None:
    """Print the JSON Schema of the experiment YAML (for editor completion and checks).

    [bold]Example[/]

      rlp schema --output experiments/experiment.schema.json
    """
    text = json.dumps(experiment_json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        console.print(f"wrote {output}")
