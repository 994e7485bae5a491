"""`mlpbp schema`: the config file's JSON Schema."""

from __future__ import annotations

import json

import typer

from mlpbp.cli.app import command


@command
def schema() -> None:
    """Print the JSON Schema of the config file, for editors to complete and check configs."""
    from mlpbp.run.schema import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))
