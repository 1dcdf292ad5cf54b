"""The `eras` command: pathway tools now; EHR, runtime and audit commands join as they land."""

from __future__ import annotations

import typer

from eras_cli import pathway_cmds

app = typer.Typer(help="ERAS pathway engine.", no_args_is_help=True, add_completion=False)
app.add_typer(pathway_cmds.app, name="pathway")


if __name__ == "__main__":
    app()
