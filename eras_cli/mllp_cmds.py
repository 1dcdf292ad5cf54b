"""`eras mllp`: the HL7 v2 listener on its own (the drain runs in `eras serve` or `eras worker`)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from eras_cli.patient_cmds import settings as runtime_settings
from flows.mllp_options import DEFAULT_PORT, MllpSettings

# The listener, the store and the FHIR client are imported when a command runs: every `eras`
# command imports this module (tests/cli/test_cli_imports.py).
if TYPE_CHECKING:
    from flows.runtime import Runtime
    from flows.settings import Settings

err = Console(stderr=True, soft_wrap=True)


def _settings(runtime: Settings, host: str | None, port: int | None) -> MllpSettings:
    update = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    return runtime.mllp.model_copy(update=update)


def mllp(
    host: Annotated[str | None, typer.Option(help="bind address (default ERAS_MLLP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help=f"port (default ERAS_MLLP_PORT or {DEFAULT_PORT})")] = None,
) -> None:
    """Take in the hospital's HL7 v2 feed (ADT, SIU, ORU over MLLP) as inbox events."""
    from flows.config import open_runtime
    from flows.mllp import start_mllp

    logging.basicConfig(level=os.environ.get("ERAS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = runtime_settings()
    settings = _settings(runtime, host, port)

    async def go() -> None:
        async with open_runtime(runtime) as rt:
            try:
                server = await start_mllp(rt, settings)
            except (ValueError, OSError) as exc:
                err.print(f"[red]the HL7 listener did not start[/red]: {exc}")
                raise typer.Exit(1) from exc
            bound = server.sockets[0].getsockname()
            print(f"eras mllp: listening on {bound[0]}:{bound[1]}", flush=True)
            async with server:
                await server.serve_forever()

    asyncio.run(go())


async def start_if_configured(rt: Runtime, settings: MllpSettings, *,
                              on_stored: Callable[[], None]) -> asyncio.Server | None:
    """The listener inside `eras serve`, when ERAS_MLLP_PORT is set; else None."""
    from flows.mllp import start_mllp

    return None if settings.port is None else await start_mllp(rt, settings, on_stored=on_stored)
