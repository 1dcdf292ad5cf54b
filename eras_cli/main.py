"""The `eras` command: pathway tools now; EHR, runtime and audit commands join as they land."""

from __future__ import annotations

import os

# A hospital network must see no phone-home attempts: Prefect's client telemetry and its
# server's analytics are off unless an operator explicitly turns them back on.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# `eras serve` starts Prefect's server on its first flow run; on a loaded machine it takes longer
# than Prefect's 20 s to answer, and a start that times out is retried with the first one lost.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

import typer  # noqa: E402  (after the telemetry switches, before anything imports Prefect)

from eras_cli import (  # noqa: E402
    audit_cmds,
    mllp_cmds,
    pathway_cmds,
    patient_cmds,
    runtime_cmds,
    terminology_cmds,
)

app = typer.Typer(help="ERAS pathway engine.", no_args_is_help=True, add_completion=False)
app.add_typer(pathway_cmds.app, name="pathway")
app.add_typer(audit_cmds.app, name="audit")
app.add_typer(terminology_cmds.app, name="terminology")
app.command()(patient_cmds.enrol)
app.command()(patient_cmds.unenrol)
app.command()(patient_cmds.apply)
app.command()(runtime_cmds.serve)
app.command()(runtime_cmds.worker)
app.command()(runtime_cmds.migrate)
app.command()(runtime_cmds.drain)
app.command()(runtime_cmds.parked)
app.command()(runtime_cmds.unpark)
app.command()(runtime_cmds.subscribe)
app.command()(mllp_cmds.mllp)


if __name__ == "__main__":
    app()
